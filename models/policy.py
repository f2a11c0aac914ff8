"""The migration policy: when does a readiness score become a migration?

A score above the threshold is not enough. The policy also asks for ``consecutive_readings``
readings in a row above it (hysteresis: a score that flaps around the threshold never fires),
a per-instance cooldown after each migration, a fleet-wide budget (migrations in flight and
per hour, so a metrics outage that alarms everything cannot empty the fleet), and no active
maintenance window. In advisory mode every decision is computed exactly as in live mode, but
``act`` is false: ShadowShift recommends and never moves traffic.

Everything here is deterministic and pure: time arrives as an argument (``now``), state comes
in and a new state goes out, the input state is never modified. Workflows can therefore run
the policy themselves, and replaying a trace gives the same decisions every time.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["hold", "migrate"]


@dataclass(frozen=True, kw_only=True)
class MaintenanceWindow:
    """A period in which no migration starts (planned work makes metrics look bad)."""

    start: float
    """Epoch seconds, inclusive."""
    end: float
    """Epoch seconds, exclusive."""
    instance_id: str | None = None
    """Instance it applies to; ``None`` = the whole fleet."""

    def covers(self, instance_id: str, now: float) -> bool:
        """Whether this window suppresses migrations of ``instance_id`` at ``now``."""
        applies = self.instance_id is None or self.instance_id == instance_id
        return applies and self.start <= now < self.end


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """Knobs of the policy; validated on construction."""

    threshold: float = 50.0
    """A reading counts as "high" when its score is at or above this."""
    consecutive_readings: int = 3
    """High readings in a row needed before migrating (hysteresis)."""
    cooldown_s: float = 3600.0
    """No second migration of the same instance within this many seconds."""
    max_concurrent: int = 2
    """Fleet-wide migrations in flight at once."""
    max_per_hour: int = 4
    """Fleet-wide migrations started in any 3,600 s."""
    migration_duration_s: float = 900.0
    """How long a migration holds a concurrency slot unless :func:`finish_migration` frees
    it earlier."""
    maintenance_windows: list[MaintenanceWindow] = field(default_factory=list)
    """Periods without migrations."""
    advisory: bool = False
    """Recommend only: decisions are computed as usual but never acted on."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, not {self.threshold}")
        if self.consecutive_readings < 1:
            raise ValueError(f"consecutive_readings must be >= 1, not {self.consecutive_readings}")
        for name in ("cooldown_s", "migration_duration_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        for name in ("max_concurrent", "max_per_hour"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        for window in self.maintenance_windows:
            if not window.start < window.end:
                raise ValueError(f"maintenance window {window} ends before it starts")


@dataclass
class InstancePolicyState:
    """What the policy remembers about one instance."""

    streak: int = 0
    """High readings in a row so far."""
    last_migration_at: float | None = None
    """When the policy last decided to migrate it."""


@dataclass
class PolicyState:
    """Everything the policy remembers; serialisable, so a workflow can carry it."""

    instances: dict[str, InstancePolicyState] = field(default_factory=dict)
    """Per-instance memory."""
    in_flight: dict[str, float] = field(default_factory=dict)
    """Instance → start time of migrations still holding a concurrency slot."""
    started: list[float] = field(default_factory=list)
    """Start times of migrations in the last hour (for ``max_per_hour``)."""


@dataclass(frozen=True)
class Reading:
    """One instance's readiness score at the decision time."""

    instance_id: str
    """The instance."""
    readiness_score: float
    """Its score; NaN = no score could be computed (counts as not high)."""


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
    state: PolicyState, config: PolicyConfig, readings: Sequence[Reading], now: float
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
        if now < started + config.migration_duration_s
    }
    new.started = [started for started in new.started if now < started + 3600.0]
    order = sorted(
        range(len(readings)),
        key=lambda i: (-_score_key(readings[i].readiness_score), readings[i].instance_id),
    )
    decisions: dict[int, Decision] = {}
    for i in order:
        decisions[i] = _decide_one(new, config, readings[i], now)
    return [decisions[i] for i in range(len(readings))], new


def finish_migration(state: PolicyState, instance_id: str) -> PolicyState:
    """A migration completed (or was abandoned): free its concurrency slot."""
    return PolicyState(
        dict(state.instances),
        {iid: started for iid, started in state.in_flight.items() if iid != instance_id},
        list(state.started),
    )


def _score_key(score: float) -> float:
    return score if math.isfinite(score) else -math.inf


def _decide_one(state: PolicyState, config: PolicyConfig, reading: Reading,
                now: float) -> Decision:
    iid = reading.instance_id
    memory = state.instances[iid]

    def hold(reason: str, held_by_budget: bool = False) -> Decision:
        return Decision(iid, "hold", False, reason, held_by_budget)

    if any(window.covers(iid, now) for window in config.maintenance_windows):
        # Readings during planned work say nothing about health: forget the streak too.
        memory.streak = 0
        return hold("Maintenance window; not migrating.")
    score = reading.readiness_score
    if not (math.isfinite(score) and score >= config.threshold):
        memory.streak = 0
        return hold(f"Score {score:.1f} below threshold {config.threshold:g}.")
    memory.streak += 1
    if memory.streak < config.consecutive_readings:
        return hold(
            f"Score {score:.1f} high for {memory.streak} of "
            f"{config.consecutive_readings} readings."
        )
    last = memory.last_migration_at
    if last is not None and now < last + config.cooldown_s:
        return hold(f"Cooling down until {last + config.cooldown_s:.0f} after last migration.")
    if iid in state.in_flight:
        return hold("A migration of this instance is already in flight.", held_by_budget=True)
    if len(state.in_flight) >= config.max_concurrent:
        return hold(f"Fleet budget: {len(state.in_flight)} migrations already in flight.",
                    held_by_budget=True)
    if len(state.started) >= config.max_per_hour:
        return hold(f"Fleet budget: {len(state.started)} migrations in the last hour.",
                    held_by_budget=True)
    memory.last_migration_at = now
    memory.streak = 0
    state.in_flight[iid] = now
    state.started.append(now)
    verb = "Recommending migration" if config.advisory else "Migrating"
    return Decision(
        iid, "migrate", not config.advisory,
        f"{verb}: score {score:.1f} >= {config.threshold:g} for "
        f"{config.consecutive_readings} readings.",
    )
