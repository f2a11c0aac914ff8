"""The migration policy: when does a readiness score become a migration?

A score above the threshold is not enough. The policy also asks for ``consecutive_readings``
readings in a row above it (hysteresis: a score that flaps around the threshold never fires),
a fleet-wide budget (migrations in flight and per hour, so a metrics outage that alarms
everything cannot empty the fleet), and no active maintenance window. In advisory mode every
decision is computed exactly as in live mode, but ``act`` is false: ShadowShift recommends and
never moves traffic.

The cooldown after a cutover is not here: the protection workflow owns it, on its own clock,
and refuses a request inside it with the time left; :func:`refused` then keeps the watcher
quiet about that instance for that long. The types (:class:`~contracts.policy.Policy`,
:class:`~contracts.policy.FleetBudget`, :class:`~contracts.policy.PolicyState`) are the
contracts'; this module is the logic.

Everything here is deterministic and pure: time arrives as an argument (``now``), state comes
in and a new state goes out, the input state is never modified. Replaying a trace gives the
same decisions every time, and the workflow may call :func:`event_risk` itself.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from contracts.policy import (
    FleetBudget,
    InstancePolicyState,
    MaintenanceWindow,
    Policy,
    PolicyState,
)

__all__ = [
    "EVENT_POINTS", "Action", "Decision", "FleetBudget", "InstancePolicyState",
    "MaintenanceWindow", "Policy", "PolicyState", "Reading", "decide", "event_risk",
    "finish_migration", "refused",
]

Action = Literal["hold", "migrate"]

EVENT_POINTS = 50.0
"""Readiness points an external event of severity 1.0 adds to the latest score."""


@dataclass(frozen=True)
class Reading:
    """One instance's readiness score at the decision time, with its own policy."""

    instance_id: str
    """The instance."""
    readiness_score: float
    """Its score; NaN = no score could be computed (counts as not high)."""
    policy: Policy = field(default_factory=Policy)
    """The instance's policy (threshold, hysteresis, advisory)."""


@dataclass(frozen=True)
class Decision:
    """What the policy decided for one reading, and why (one plain sentence)."""

    instance_id: str
    """The instance."""
    action: Action
    """``hold`` or ``migrate``."""
    act: bool
    """Whether ShadowShift should carry it out (false for holds and in advisory mode)."""
    reason: str
    """Why, for the log and the operator."""
    held_by_budget: bool = False
    """A hold although the readings call for a migration: the fleet budget is spent, or a
    migration of this instance is already in flight."""


def decide(
    state: PolicyState, budget: FleetBudget, readings: Sequence[Reading], now: float
) -> tuple[list[Decision], PolicyState]:
    """Decide for a batch of readings taken at ``now``.

    Readings are considered highest score first (ties by instance id), so when the fleet
    budget is short the riskiest instance gets the slot. Decisions come back in input order.

    Returns:
        The decisions and the new state; ``state`` itself is left untouched.
    """
    # Copy what this call may change, not the whole fleet's memory (deepcopy dominated replay).
    new = PolicyState(dict(state.instances), dict(state.in_flight), list(state.started))
    for reading in readings:
        known = new.instances.get(reading.instance_id)
        new.instances[reading.instance_id] = (
            copy.copy(known) if known is not None else InstancePolicyState()
        )
    new.in_flight = {
        iid: started for iid, started in new.in_flight.items()
        if now < started + budget.migration_duration_s
    }
    new.started = [started for started in new.started if now < started + 3600.0]
    order = sorted(
        range(len(readings)),
        key=lambda i: (-_score_key(readings[i].readiness_score), readings[i].instance_id),
    )
    decisions: dict[int, Decision] = {}
    for i in order:
        decisions[i] = _decide_one(new, budget, readings[i], now)
    return [decisions[i] for i in range(len(readings))], new


def finish_migration(state: PolicyState, instance_id: str) -> PolicyState:
    """A migration completed (or was abandoned): free its concurrency slot."""
    return PolicyState(
        dict(state.instances),
        {iid: started for iid, started in state.in_flight.items() if iid != instance_id},
        list(state.started),
    )


def refused(state: PolicyState, instance_id: str, now: float,
            retry_after_s: float) -> PolicyState:
    """The protection refused a migration (cooldown, paused, no healthy shadow): free its
    slot, and do not ask again for ``retry_after_s``."""
    new = finish_migration(state, instance_id)
    memory = copy.copy(new.instances.get(instance_id) or InstancePolicyState())
    memory.quiet_until = now + max(retry_after_s, 0.0)
    new.instances[instance_id] = memory
    return new


def event_risk(readiness_score: float | None, severity: float,
               policy: Policy) -> tuple[float, bool]:
    """The risk an external event raises, and whether it calls for a migration: the latest
    readiness score (0 without one) plus ``severity`` (clamped to 0..1) times :data:`EVENT_POINTS`,
    compared with the policy's threshold."""
    base = readiness_score if readiness_score is not None and math.isfinite(readiness_score) \
        else 0.0
    raised = base + max(0.0, min(severity, 1.0)) * EVENT_POINTS
    return raised, raised >= policy.threshold


def _score_key(score: float) -> float:
    return score if math.isfinite(score) else -math.inf


def _decide_one(state: PolicyState, budget: FleetBudget, reading: Reading,
                now: float) -> Decision:
    iid, policy = reading.instance_id, reading.policy
    memory = state.instances[iid]

    def hold(reason: str, held_by_budget: bool = False) -> Decision:
        return Decision(iid, "hold", False, reason, held_by_budget)

    if any(window.covers(iid, now) for window in budget.maintenance_windows):
        # Readings during planned work say nothing about health: forget the streak too.
        memory.streak = 0
        return hold("Maintenance window; not migrating.")
    score = reading.readiness_score
    if not (math.isfinite(score) and score >= policy.threshold):
        memory.streak = 0
        return hold(f"Score {score:.1f} below threshold {policy.threshold:g}.")
    memory.streak += 1
    if memory.streak < policy.consecutive_readings:
        return hold(
            f"Score {score:.1f} high for {memory.streak} of "
            f"{policy.consecutive_readings} readings."
        )
    if memory.quiet_until is not None and now < memory.quiet_until:
        return hold(f"The protection refused the last request; not asking again until "
                    f"{memory.quiet_until:.0f}.")
    if iid in state.in_flight:
        return hold("A migration of this instance is already in flight.", held_by_budget=True)
    if len(state.in_flight) >= budget.max_concurrent:
        return hold(f"Fleet budget: {len(state.in_flight)} migrations already in flight.",
                    held_by_budget=True)
    if len(state.started) >= budget.max_per_hour:
        return hold(f"Fleet budget: {len(state.started)} migrations in the last hour.",
                    held_by_budget=True)
    memory.streak = 0
    memory.quiet_until = None
    state.in_flight[iid] = now
    state.started.append(now)
    advisory = policy.advisory or budget.advisory
    verb = "Recommending migration" if advisory else "Migrating"
    return Decision(
        iid, "migrate", not advisory,
        f"{verb}: score {score:.1f} >= {policy.threshold:g} for "
        f"{policy.consecutive_readings} readings.",
    )
