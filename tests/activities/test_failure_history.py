"""The fleet watcher's history term: per-instance failure rates read from the outcome store,
with the instance's class (platform and tier) as its prior."""

from __future__ import annotations

from pathlib import Path

from activities.outcomes_store import OutcomeRecord, OutcomeStore
from activities.watching.history import FailureHistory, instance_class
from models.history import HistoryConfig

DAY = 86400.0
NOW = 400 * DAY


class _Clock:
    """A clock the test moves by hand (no sleeping)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _failed(store: OutcomeStore, record_id: str, instance_id: str, at: float) -> None:
    store.add(OutcomeRecord(record_id, instance_id, "cutover", at, 7200.0,
                            policy_decided=True))
    store.observe(record_id, at + 60, "failed", "recovery")


def test_rates_come_from_the_store_with_the_class_as_prior(tmp_path: Path) -> None:
    """An instance whose cutovers ended in failure gets a high rate; an instance of the same
    class without records inherits part of it (not 0, not the fleet prior); an instance of
    another class gets the fleet's rate."""
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    for i in range(4):
        _failed(store, f"a:{i}", "db-a", NOW - (i + 1) * DAY)
    history = FailureHistory(store, clock=_Clock(NOW))
    tier1 = instance_class("local", 1)
    rates = history.rates({"db-a": tier1, "db-b": tier1, "db-c": instance_class("aws", 2)})
    prior = HistoryConfig().fleet_prior
    assert rates["db-a"] > rates["db-b"] > rates["db-c"] > prior
    assert 0 < rates["db-c"] < 1 and rates["db-a"] > 0.5


def test_the_store_is_read_once_per_refresh(tmp_path: Path) -> None:
    """A record written after the last read shows up only once the refresh interval has
    passed on the history's clock."""
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    clock = _Clock(NOW)
    history = FailureHistory(store, refresh_s=300.0, clock=clock)
    classes = {"db-a": instance_class("local", 2)}
    before = history.rates(classes)["db-a"]
    _failed(store, "late", "db-a", NOW - DAY)
    clock.now += 299.0
    assert history.rates(classes)["db-a"] == before
    clock.now += 2.0
    assert history.rates(classes)["db-a"] > before


def test_an_open_record_does_not_count_yet(tmp_path: Path) -> None:
    """A decision whose outcome window is still open says nothing yet."""
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    _failed(store, "open", "db-a", NOW - 600)
    history = FailureHistory(store, clock=_Clock(NOW))
    rates = history.rates({"db-a": "local/tier-1", "db-b": "local/tier-1"})
    assert rates["db-a"] == rates["db-b"] == HistoryConfig().fleet_prior
