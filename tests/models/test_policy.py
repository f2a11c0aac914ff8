"""The migration policy: hysteresis, fleet budget, refusals, maintenance, advisory mode, events."""

from __future__ import annotations

import pytest

from contracts.policy import (
    FleetBudget,
    MaintenanceWindow,
    Policy,
    PolicyError,
    PolicyState,
    validate_budget,
    validate_policy,
)
from models.policy import (
    Decision,
    Reading,
    decide,
    event_risk,
    finish_migration,
    refused,
)
from models.scoring import run_policy

HIGH, LOW = 90.0, 10.0
ROOMY = FleetBudget(max_concurrent=100, max_per_hour=100, migration_duration_s=0.0)


def _run(policy: Policy, scores: list[float], budget: FleetBudget = ROOMY, start: float = 0.0,
         step: float = 300.0, instance: str = "a",
         state: PolicyState | None = None) -> list[Decision]:
    state = state or PolicyState()
    out = []
    for i, score in enumerate(scores):
        (decision,), state = decide(state, budget, [Reading(instance, score, policy)],
                                    start + i * step)
        out.append(decision)
    return out


def _actions(decisions: list[Decision]) -> str:
    return "".join("M" if d.action == "migrate" else "." for d in decisions)


def test_needs_consecutive_high_readings() -> None:
    """Three high readings in a row are needed; a low one resets the count."""
    policy = Policy(consecutive_readings=3)
    assert _actions(_run(policy, [HIGH, HIGH, LOW, HIGH, HIGH, HIGH])) == ".....M"


def test_flapping_scores_never_migrate() -> None:
    """A score alternating around the threshold never builds a streak."""
    assert "M" not in _actions(_run(Policy(consecutive_readings=2), [HIGH, LOW] * 10))


def test_each_instance_is_judged_by_its_own_threshold() -> None:
    """One batch, two policies: the same score is high for one instance and not the other."""
    readings = [Reading("strict", 70.0, Policy(threshold=60, consecutive_readings=1)),
                Reading("lax", 70.0, Policy(threshold=80, consecutive_readings=1))]
    decisions, _ = decide(PolicyState(), ROOMY, readings, 0.0)
    assert [d.action for d in decisions] == ["migrate", "hold"]


def test_refusal_quiets_the_instance_for_the_time_given() -> None:
    """After the protection refuses (its cooldown), the watcher does not ask again until the
    time it was given has passed, and the refusal freed the budget slot."""
    policy = Policy(consecutive_readings=1)
    budget = FleetBudget(max_concurrent=1, max_per_hour=100, migration_duration_s=900)
    (first,), state = decide(PolicyState(), budget, [Reading("a", HIGH, policy)], 0.0)
    assert first.action == "migrate" and "a" in state.in_flight
    state = refused(state, "a", 10.0, retry_after_s=600)
    assert "a" not in state.in_flight
    (held,), state = decide(state, budget, [Reading("a", HIGH, policy)], 300.0)
    assert held.action == "hold" and "refused" in held.reason
    (again,), _ = decide(state, budget, [Reading("a", HIGH, policy)], 610.0)
    assert again.action == "migrate"


def test_replay_applies_the_protections_cooldown() -> None:
    """Offline, the product's split is reproduced: the policy asks, the protection refuses
    within its cooldown, so a persisting high score migrates once per cooldown."""
    import numpy as np

    times = np.arange(20, dtype=np.float64) * 300.0
    decisions = run_policy(times, np.full(20, HIGH), Policy(consecutive_readings=2,
                                                            cooldown_s=3600))
    actions = _actions(decisions)
    assert actions.index("M") == 1
    assert actions.count("M") == 2
    assert any("cooldown" in d.reason for d in decisions)


def test_fleet_budget_limits_concurrent_migrations() -> None:
    """With room for two migrations in flight, the two riskiest of four instances go."""
    budget = FleetBudget(max_concurrent=2, max_per_hour=10)
    policy = Policy(consecutive_readings=1, threshold=50)
    readings = [Reading(i, s, policy) for i, s in (("a", 60), ("b", 95), ("c", 70), ("d", 99))]
    decisions, state = decide(PolicyState(), budget, readings, 0.0)
    assert [d.action for d in decisions] == ["hold", "migrate", "hold", "migrate"]
    assert "in flight" in decisions[0].reason
    # A finished migration frees its slot for the next reading.
    state = finish_migration(state, "d")
    decisions, _ = decide(state, budget, [Reading("c", 70, policy)], 60.0)
    assert decisions[0].action == "migrate"


def test_fleet_budget_limits_migrations_per_hour() -> None:
    """Per-hour budget: the third migration in an hour waits until the first is an hour old."""
    budget = FleetBudget(max_concurrent=10, max_per_hour=2, migration_duration_s=60)
    policy = Policy(consecutive_readings=1)
    state = PolicyState()
    for t, iid in [(0.0, "a"), (100.0, "b")]:
        (d,), state = decide(state, budget, [Reading(iid, HIGH, policy)], t)
        assert d.action == "migrate"
    (d,), state = decide(state, budget, [Reading("c", HIGH, policy)], 200.0)
    assert d.action == "hold" and "last hour" in d.reason
    (d,), state = decide(state, budget, [Reading("c", HIGH, policy)], 3600.0)
    assert d.action == "migrate"


def test_maintenance_window_suppresses_and_resets() -> None:
    """No migration inside a window, and readings inside it do not count towards the streak."""
    window = MaintenanceWindow(start=600, end=1500)
    budget = FleetBudget(max_per_hour=100, maintenance_windows=[window])
    decisions = _run(Policy(consecutive_readings=3), [HIGH] * 10, budget)
    # t=0,300 high; 600..1200 in maintenance; then needs 3 fresh readings: 1500,1800,2100.
    assert _actions(decisions) == ".......M.."
    assert "Maintenance" in decisions[3].reason
    other = MaintenanceWindow(start=0, end=10_000, instance_id="someone-else")
    unaffected = FleetBudget(maintenance_windows=[other])
    assert _actions(_run(Policy(consecutive_readings=1), [HIGH], unaffected)) == "M"


@pytest.mark.parametrize("advisory_where", ["policy", "fleet"])
def test_advisory_mode_recommends_but_never_acts(advisory_where: str) -> None:
    """Advisory decisions (the instance's or the whole fleet's) are the live ones with
    act=False."""
    live = _run(Policy(consecutive_readings=2), [HIGH] * 6)
    policy = Policy(consecutive_readings=2, advisory=advisory_where == "policy")
    budget = FleetBudget(max_per_hour=100, migration_duration_s=0.0,
                         advisory=advisory_where == "fleet")
    advisory = _run(policy, [HIGH] * 6, budget)
    assert _actions(live) == _actions(advisory)
    assert any(d.act for d in live)
    assert not any(d.act for d in advisory)
    assert any("Recommending" in d.reason for d in advisory)


def test_policy_is_pure() -> None:
    """decide() leaves its input state alone and gives equal results for equal inputs."""
    state = PolicyState()
    reading = Reading("a", HIGH, Policy(consecutive_readings=1))
    first, new = decide(state, ROOMY, [reading], 10.0)
    assert state == PolicyState()
    second, _ = decide(state, ROOMY, [reading], 10.0)
    assert first == second
    assert new.started == [10.0]


def test_nan_score_holds() -> None:
    """A reading without a score never counts as high."""
    assert _actions(_run(Policy(consecutive_readings=1), [float("nan")] * 3)) == "..."


def test_event_severity_is_turned_into_risk_by_the_policy() -> None:
    """An event adds severity x 50 points to the latest score (0 without one), clamped, and
    asks for a migration at the threshold."""
    policy = Policy(threshold=60)
    assert event_risk(30.0, 0.8, policy) == (70.0, True)
    assert event_risk(None, 0.8, policy) == (40.0, False)
    assert event_risk(float("nan"), 2.0, policy) == (50.0, False)
    assert event_risk(55.0, -1.0, policy) == (55.0, False)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"consecutive_readings": 0}, "consecutive_readings"), ({"cooldown_s": -1}, "cooldown_s"),
     ({"threshold": float("nan")}, "threshold"), ({"threshold": 101}, "threshold"),
     ({"profile": "x"}, "profile"), ({"failover_after_s": 0.1}, "failover_after_s")],
)
def test_bad_policy_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    """Nonsense knobs are refused with a message naming the field."""
    with pytest.raises(PolicyError, match=f"policy.{field}"):
        validate_policy(Policy(**kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_concurrent": -1}, {"max_per_hour": -2},
     {"maintenance_windows": [MaintenanceWindow(start=5, end=5)]}],
)
def test_bad_budget_is_refused(kwargs: dict[str, object]) -> None:
    """A fleet budget that cannot be meant is refused."""
    with pytest.raises(PolicyError):
        validate_budget(FleetBudget(**kwargs))  # type: ignore[arg-type]


def test_one_set_of_defaults() -> None:
    """The spec's policy, the watcher's readings and the offline replay share one type with
    one set of defaults (the two types this replaced defaulted to thresholds 60 and 50)."""
    from contracts.spec import ProtectionSpec

    assert ProtectionSpec("db-a").policy == Policy() == Reading("a", 1.0).policy
    assert Policy().threshold == 60.0
