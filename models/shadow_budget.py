"""Who gets a shadow: tiered, risk-triggered shadows under a fleet-wide budget.

The specification's auto-scaling item: the number of shadows follows risk. Critical instances
(tiers 1 and 2) want a standing shadow; tier-3 instances run without one and get one when
their readiness score stays at or above ``tier3_threshold`` for ``tier3_readings`` readings,
and give it back once their score has stayed under ``release_below`` for ``release_after_s``
(the gap between the two thresholds and the wait keep a score that hovers from provisioning
and destroying shadows in turn).

Shadows cost machines, so the fleet has a budget: at most ``max_shadows`` shadows at once,
at most ``max_provisioning`` being provisioned at once and ``max_per_hour`` started per hour.
When the budget is short, critical instances are served before tier-3 ones and, within each
group, the riskiest first. A shadow that is still wanted is never taken away to serve another
instance: tearing down a working shadow to provision another leaves both unprotected for the
length of a copy.

The rate limits, hysteresis and riskiest-first ordering are those of the migration policy
(:func:`models.policy.decide`), applied to "provision a shadow" instead of "migrate"; the
shadow cap is enforced through its concurrency limit. Pure and deterministic like the policy:
time comes in as ``now``, state comes in and a new state goes out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from contracts.policy import FleetBudget, Policy, PolicyState
from contracts.watch import ShadowBudget
from models.policy import Decision, Reading, decide

ShadowAction = Literal["keep", "provision", "release", "wait", "none"]
CRITICAL_TIERS = (1, 2)
"""Tiers that want a standing shadow."""


ShadowBudgetConfig = ShadowBudget
"""The fleet's shadow budget and the tier-3 trigger (the watcher's input carries it)."""


def validate_shadow_budget(config: ShadowBudget) -> ShadowBudget:
    """Return ``config`` if it is consistent, else raise ``ValueError`` naming the field."""
    if not config.release_below <= config.tier3_threshold:
        raise ValueError(f"release_below ({config.release_below}) must not exceed "
                         f"tier3_threshold ({config.tier3_threshold})")
    for name in ("max_shadows", "max_provisioning", "max_per_hour", "tier3_readings"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, not {getattr(config, name)}")
    return config


@dataclass(frozen=True)
class FleetMember:
    """One protected instance as the planner sees it."""

    instance_id: str
    """The instance."""
    tier: int
    """1, 2 or 3."""
    readiness_score: float
    """Latest score (NaN: none yet)."""
    has_shadow: bool
    """A shadow exists or is being provisioned."""
    standing: bool = False
    """Keeps its shadow whatever the planner says (counted against the budget, never
    released)."""


@dataclass
class ShadowBudgetState:
    """What the planner remembers; serialisable, so a workflow can carry it."""

    provisioning: PolicyState = field(default_factory=PolicyState)
    """Streaks, provisions in flight and in the last hour (the policy's memory)."""
    calm_since: dict[str, float] = field(default_factory=dict)
    """Tier-3 instance with a shadow → since when its score has been under ``release_below``."""


@dataclass(frozen=True)
class ShadowDecision:
    """What to do about one instance's shadow, and why."""

    instance_id: str
    """The instance."""
    action: ShadowAction
    """keep, provision, release, wait (wanted, over budget) or none (not wanted)."""
    reason: str
    """One sentence."""


def plan_shadows(state: ShadowBudgetState, config: ShadowBudgetConfig,
                 fleet: Sequence[FleetMember], now: float
                 ) -> tuple[list[ShadowDecision], ShadowBudgetState]:
    """Decide, for every member, whether it keeps, gets, gives back or waits for a shadow.

    Returns:
        Decisions in input order and the new state (``state`` is left untouched).
    """
    decisions: dict[str, ShadowDecision] = {}
    calm_since = dict(state.calm_since)
    kept = 0
    for member in fleet:
        if not member.has_shadow:
            continue
        decision = _existing(member, config, calm_since, now)
        decisions[member.instance_id] = decision
        kept += decision.action == "keep"
    for gone in set(calm_since) - {m.instance_id for m in fleet if m.has_shadow}:
        del calm_since[gone]
    provisioning = state.provisioning
    for critical in (True, False):
        group = [m for m in fleet if not m.has_shadow and (m.tier in CRITICAL_TIERS) == critical]
        if not group:
            continue
        granted, provisioning = _grant(group, critical, config, provisioning,
                                       config.max_shadows - kept, now)
        decisions.update({d.instance_id: d for d in granted})
        kept += sum(d.action == "provision" for d in granted)
    return ([decisions[m.instance_id] for m in fleet],
            ShadowBudgetState(provisioning, calm_since))


def _existing(member: FleetMember, config: ShadowBudgetConfig, calm_since: dict[str, float],
              now: float) -> ShadowDecision:
    iid = member.instance_id
    if member.tier in CRITICAL_TIERS or member.standing:
        return ShadowDecision(iid, "keep", f"Tier {member.tier} keeps a standing shadow.")
    score = member.readiness_score
    if math.isfinite(score) and score >= config.release_below:
        calm_since.pop(iid, None)
        return ShadowDecision(iid, "keep", f"Score {score:.0f} still >= {config.release_below:g}.")
    since = calm_since.setdefault(iid, now)
    if now - since >= config.release_after_s:
        del calm_since[iid]
        return ShadowDecision(iid, "release", f"Score under {config.release_below:g} for "
                              f"{now - since:.0f} s; releasing the tier-3 shadow.")
    return ShadowDecision(iid, "keep", f"Score under {config.release_below:g} for "
                          f"{now - since:.0f} of {config.release_after_s:.0f} s.")


def _grant(group: list[FleetMember], critical: bool, config: ShadowBudgetConfig,
           provisioning: PolicyState, free: int, now: float
           ) -> tuple[list[ShadowDecision], PolicyState]:
    active = sum(now < t + config.provisioning_s for t in provisioning.in_flight.values())
    # The shadow cap rides on the policy's concurrency limit: no more grants than free slots.
    concurrent = active + max(0, min(free, config.max_provisioning - active))
    policy = Policy(threshold=0.0 if critical else config.tier3_threshold,
                    consecutive_readings=1 if critical else config.tier3_readings)
    budget = FleetBudget(max_concurrent=concurrent, max_per_hour=config.max_per_hour,
                         migration_duration_s=config.provisioning_s)
    # A critical instance wants a shadow whatever its score; an unknown score ranks last.
    readings = [Reading(m.instance_id, _finite_or(m.readiness_score, 0.0) if critical
                        else m.readiness_score, policy) for m in group]
    verdicts, provisioning = decide(provisioning, budget, readings, now)
    return [_translate(m, v, critical) for m, v in zip(group, verdicts, strict=True)], provisioning


def _translate(member: FleetMember, verdict: Decision, critical: bool) -> ShadowDecision:
    iid = member.instance_id
    if verdict.action == "migrate":
        why = f"tier {member.tier}" + ("" if critical else
                                       f", score {member.readiness_score:.0f}")
        return ShadowDecision(iid, "provision", f"Provisioning a shadow ({why}).")
    if verdict.held_by_budget:
        return ShadowDecision(iid, "wait", "Fleet shadow budget is spent; waiting "
                              f"(riskier instances first). {verdict.reason}")
    return ShadowDecision(iid, "none", f"No shadow wanted: {verdict.reason}")


def _finite_or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default
