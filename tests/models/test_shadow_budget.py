"""Tier-3 shadows follow risk, and the fleet's shadow budget serves critical and risky first."""

from __future__ import annotations

import math

import pytest

from models.shadow_budget import (
    FleetMember,
    ShadowBudgetConfig,
    ShadowBudgetState,
    ShadowDecision,
    plan_shadows,
    validate_shadow_budget,
)

NAN = math.nan


def _actions(decisions: list[ShadowDecision]) -> dict[str, str]:
    return {d.instance_id: d.action for d in decisions}


def _run(config: ShadowBudgetConfig, rounds: list[list[FleetMember]], start: float = 0.0,
         step: float = 60.0) -> list[dict[str, str]]:
    state = ShadowBudgetState()
    out = []
    for i, fleet in enumerate(rounds):
        decisions, state = plan_shadows(state, config, fleet, start + i * step)
        out.append(_actions(decisions))
    return out


def test_tier3_gets_a_shadow_after_sustained_risk_only() -> None:
    """Two high readings in a row provision a tier-3 shadow; a score flapping across the
    trigger never does; a low score wants none."""
    config = ShadowBudgetConfig(tier3_threshold=35.0, tier3_readings=2)
    rounds = [[FleetMember("steady", 3, s, False), FleetMember("flappy", 3, f, False),
               FleetMember("calm", 3, 5.0, False)]
              for s, f in ((40.0, 40.0), (45.0, 10.0), (50.0, 40.0), (50.0, 10.0))]
    seen = _run(config, rounds)
    assert [r["steady"] for r in seen[:2]] == ["none", "provision"]
    assert all(r["flappy"] == "none" and r["calm"] == "none" for r in seen)


def test_budget_serves_critical_first_then_the_riskiest() -> None:
    """With one free shadow, a critical instance without a score beats a tier-3 at 90; with
    two free and a provisioning limit of two, the two riskiest tier-3 instances get them and
    the third waits; the hourly limit holds later grants back too."""
    config = ShadowBudgetConfig(max_shadows=1, tier3_readings=1)
    fleet = [FleetMember("t3-hot", 3, 90.0, False), FleetMember("t1-new", 1, NAN, False)]
    decisions, _ = plan_shadows(ShadowBudgetState(), config, fleet, 0.0)
    assert _actions(decisions) == {"t3-hot": "wait", "t1-new": "provision"}
    assert "budget" in decisions[0].reason

    config = ShadowBudgetConfig(max_shadows=4, max_provisioning=2, tier3_readings=1)
    fleet = [FleetMember("t1", 1, 10.0, True), FleetMember("t2", 2, 10.0, True),
             FleetMember("a", 3, 40.0, False), FleetMember("b", 3, 80.0, False),
             FleetMember("c", 3, 60.0, False)]
    decisions, state = plan_shadows(ShadowBudgetState(), config, fleet, 0.0)
    assert _actions(decisions) == {"t1": "keep", "t2": "keep", "a": "wait", "b": "provision",
                                   "c": "provision"}
    hourly = ShadowBudgetConfig(max_shadows=10, max_provisioning=10, max_per_hour=2,
                                tier3_readings=1, provisioning_s=60.0)
    fleet = [FleetMember(f"i{n}", 3, 50.0 + n, False) for n in range(3)]
    decisions, state = plan_shadows(ShadowBudgetState(), hourly, fleet, 0.0)
    assert _actions(decisions) == {"i0": "wait", "i1": "provision", "i2": "provision"}
    decisions, state = plan_shadows(state, hourly, [fleet[0]], 600.0)
    assert _actions(decisions) == {"i0": "wait"}  # the hour's two provisions are used up
    decisions, _ = plan_shadows(state, hourly, [fleet[0]], 3601.0)
    assert _actions(decisions) == {"i0": "provision"}


def test_wanted_shadows_are_never_taken_away() -> None:
    """A full budget makes a new critical instance wait rather than strip a tier-3 shadow
    whose score has not calmed down."""
    config = ShadowBudgetConfig(max_shadows=1)
    fleet = [FleetMember("t3", 3, 25.0, True), FleetMember("t1", 1, 70.0, False)]
    decisions, _ = plan_shadows(ShadowBudgetState(), config, fleet, 0.0)
    assert _actions(decisions) == {"t3": "keep", "t1": "wait"}


def test_tier3_shadow_is_released_after_a_calm_hour_and_a_blip_restarts_the_clock() -> None:
    """Under ``release_below`` for ``release_after_s`` releases; one reading above it in
    between restarts the wait; critical shadows are always kept."""
    config = ShadowBudgetConfig(release_below=20.0, release_after_s=600.0)
    scores = [10.0, 10.0, 25.0, 10.0, 10.0, 10.0]
    times = [0.0, 500.0, 550.0, 600.0, 1100.0, 1200.0]
    state = ShadowBudgetState()
    seen = []
    for score, now in zip(scores, times, strict=True):
        fleet = [FleetMember("t3", 3, score, True), FleetMember("t1", 1, 0.0, True)]
        decisions, state = plan_shadows(state, config, fleet, now)
        seen.append(_actions(decisions))
    assert [s["t3"] for s in seen] == ["keep"] * 5 + ["release"]
    assert all(s["t1"] == "keep" for s in seen)
    assert state.calm_since == {}


def test_contradictory_budget_is_refused() -> None:
    """A release threshold above the trigger would provision and release in turn."""
    with pytest.raises(ValueError, match="release_below"):
        validate_shadow_budget(ShadowBudgetConfig(tier3_threshold=30.0, release_below=40.0))
    with pytest.raises(ValueError, match="max_shadows must be >= 0"):
        validate_shadow_budget(ShadowBudgetConfig(max_shadows=-1))
