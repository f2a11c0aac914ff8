"""The migration policy: hysteresis, cooldown, fleet budget, maintenance, advisory mode."""

from __future__ import annotations

import pytest

from models.policy import (
    Decision,
    MaintenanceWindow,
    PolicyConfig,
    PolicyState,
    Reading,
    decide,
    finish_migration,
)

HIGH, LOW = 90.0, 10.0


def _run(config: PolicyConfig, scores: list[float], start: float = 0.0, step: float = 300.0,
         instance: str = "a", state: PolicyState | None = None) -> list[Decision]:
    state = state or PolicyState()
    out = []
    for i, score in enumerate(scores):
        (decision,), state = decide(state, config, [Reading(instance, score)], start + i * step)
        out.append(decision)
    return out


def _actions(decisions: list[Decision]) -> str:
    return "".join("M" if d.action == "migrate" else "." for d in decisions)


def test_needs_consecutive_high_readings() -> None:
    """Three high readings in a row migrate on the third; two do not."""
    config = PolicyConfig(consecutive_readings=3)
    assert _actions(_run(config, [HIGH, HIGH, LOW, HIGH, HIGH, HIGH])) == ".....M"


def test_flapping_scores_never_migrate() -> None:
    """A score alternating around the threshold gives a flat row of holds."""
    config = PolicyConfig(consecutive_readings=2)
    assert _actions(_run(config, [HIGH, LOW] * 50)) == "." * 100


def test_cooldown_blocks_a_second_migration() -> None:
    """After a migration, a persisting high score waits out the cooldown, then fires again."""
    config = PolicyConfig(consecutive_readings=2, cooldown_s=3600, max_per_hour=100)
    actions = _actions(_run(config, [HIGH] * 20, step=300))
    # Fires at reading 2 (t=300). The streak keeps counting while cooling down, so the next
    # migration comes the moment the cooldown ends: t=3900, reading 14 (index 13).
    assert actions.index("M") == 1
    assert actions.count("M") == 2
    assert actions.rindex("M") == 13
    reasons = [d.reason for d in _run(config, [HIGH] * 5)]
    assert any("Cooling down" in reason for reason in reasons)


def test_fleet_budget_limits_concurrent_migrations() -> None:
    """With room for two migrations in flight, the two riskiest of four instances go."""
    config = PolicyConfig(consecutive_readings=1, max_concurrent=2, max_per_hour=10)
    readings = [Reading("a", 60), Reading("b", 95), Reading("c", 70), Reading("d", 99)]
    decisions, state = decide(PolicyState(), config, readings, 0.0)
    assert [d.action for d in decisions] == ["hold", "migrate", "hold", "migrate"]
    assert "in flight" in decisions[0].reason
    # A finished migration frees its slot for the next reading.
    state = finish_migration(state, "d")
    decisions, _ = decide(state, config, [Reading("c", 70)], 60.0)
    assert decisions[0].action == "migrate"


def test_fleet_budget_limits_migrations_per_hour() -> None:
    """Per-hour budget: the third migration in an hour waits until the first is an hour old."""
    config = PolicyConfig(consecutive_readings=1, max_concurrent=10, max_per_hour=2,
                          migration_duration_s=60)
    state = PolicyState()
    for t, iid in [(0.0, "a"), (100.0, "b")]:
        (d,), state = decide(state, config, [Reading(iid, HIGH)], t)
        assert d.action == "migrate"
    (d,), state = decide(state, config, [Reading("c", HIGH)], 200.0)
    assert d.action == "hold" and "last hour" in d.reason
    (d,), state = decide(state, config, [Reading("c", HIGH)], 3600.0)
    assert d.action == "migrate"


def test_maintenance_window_suppresses_and_resets() -> None:
    """No migration inside a window, and readings inside it do not count towards the streak."""
    window = MaintenanceWindow(start=600, end=1500)
    config = PolicyConfig(consecutive_readings=3, maintenance_windows=[window])
    decisions = _run(config, [HIGH] * 10, step=300)
    # t=0,300 high; 600..1200 in maintenance; then needs 3 fresh readings: 1500,1800,2100.
    assert _actions(decisions) == ".......M.."
    assert "Maintenance" in decisions[3].reason
    other = MaintenanceWindow(start=0, end=10_000, instance_id="someone-else")
    unaffected = PolicyConfig(consecutive_readings=1, maintenance_windows=[other])
    assert _actions(_run(unaffected, [HIGH])) == "M"


def test_advisory_mode_recommends_but_never_acts() -> None:
    """Advisory decisions are the live ones with act=False."""
    live = _run(PolicyConfig(consecutive_readings=2), [HIGH] * 6)
    advisory = _run(PolicyConfig(consecutive_readings=2, advisory=True), [HIGH] * 6)
    assert _actions(live) == _actions(advisory)
    assert any(d.act for d in live)
    assert not any(d.act for d in advisory)
    assert any("Recommending" in d.reason for d in advisory)


def test_policy_is_pure() -> None:
    """decide() leaves its input state alone and gives equal results for equal inputs."""
    config = PolicyConfig(consecutive_readings=1)
    state = PolicyState()
    first, new = decide(state, config, [Reading("a", HIGH)], 10.0)
    assert state == PolicyState()
    second, _ = decide(state, config, [Reading("a", HIGH)], 10.0)
    assert first == second
    assert new.instances["a"].last_migration_at == 10.0


def test_nan_score_holds() -> None:
    """A reading without a score never counts as high."""
    assert _actions(_run(PolicyConfig(consecutive_readings=1), [float("nan")] * 3)) == "..."


@pytest.mark.parametrize(
    "kwargs",
    [{"consecutive_readings": 0}, {"cooldown_s": -1}, {"max_concurrent": -1},
     {"threshold": float("nan")},
     {"maintenance_windows": [MaintenanceWindow(start=5, end=5)]}],
)
def test_bad_config_is_refused(kwargs: dict[str, object]) -> None:
    """Nonsense knobs fail at construction with a message naming them."""
    with pytest.raises(ValueError):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]
