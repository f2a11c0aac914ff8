"""The historical failure rate: per instance, shrunk towards its class, read from the
outcome store, and not fooled by cutovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.outcomes_store import OutcomeRecord, OutcomeStore
from models.feedback import Evidence, label_outcome
from models.history import HistoryConfig, OutcomeEvidence, failure_rates, rates_from_history

DAY = 86400.0


def test_rate_is_shrunk_towards_the_class() -> None:
    """Two failures in two records is not a 100 % rate; the class's history pulls it back;
    an instance without records gets its class's rate."""
    now = 1000 * DAY
    evidence = [OutcomeEvidence("a", now - DAY, "failed"), OutcomeEvidence("a", now, "failed")]
    evidence += [OutcomeEvidence("b", now - i * DAY, "healthy") for i in range(20)]
    classes = {"a": "db", "b": "db", "c": "db", "z": "cache"}
    rates = failure_rates(evidence, now, classes, instances=["c", "z"])
    assert 0.1 < rates["a"] < 0.5
    assert rates["b"] < rates["c"] < rates["a"]
    assert rates["z"] != rates["c"]  # another class: the fleet prior, not db's
    assert all(0.0 <= r <= 1.0 for r in rates.values())


def test_old_records_fade_and_unlabelled_ones_do_not_count() -> None:
    """A failure a year ago weighs less than one yesterday; unknown and censored outcomes
    move nothing."""
    now = 1000 * DAY
    recent = failure_rates([OutcomeEvidence("a", now - DAY, "failed")], now)["a"]
    old = failure_rates([OutcomeEvidence("a", now - 365 * DAY, "failed")], now)["a"]
    assert recent > old
    none = failure_rates([], now, instances=["a"])["a"]
    ignored = failure_rates([OutcomeEvidence("a", now, "censored"),
                             OutcomeEvidence("a", now, "unknown")], now)["a"]
    assert ignored == pytest.approx(none) == pytest.approx(HistoryConfig().fleet_prior)


def test_cutover_that_only_looks_healthy_is_censored() -> None:
    """After a policy cutover an idle former primary answers probes fine: that is no
    evidence of a false alarm. A near miss that stayed healthy is one."""
    healthy_probe = [Evidence("endpoint_probe", "healthy", 100.0)]
    assert label_outcome("cutover", True, healthy_probe, 0.0, 7200.0) == "censored"
    assert label_outcome("near_miss", False, healthy_probe, 0.0, 7200.0) == "healthy"
    disk_still_filling = [*healthy_probe, Evidence("resource_probe", "degraded", 200.0)]
    assert label_outcome("cutover", True, disk_still_filling, 0.0, 7200.0) == "degraded"
    retired = [Evidence("recovery", "failed", 300.0)]
    assert label_outcome("cutover", True, retired, 0.0, 7200.0) == "failed"
    assert label_outcome("cutover", True, [], 0.0, 7200.0) == "unknown"
    late = [Evidence("recovery", "failed", 9000.0)]
    assert label_outcome("cutover", True, late, 0.0, 7200.0) == "unknown"


def test_history_term_is_read_from_the_outcome_store(tmp_path: Path) -> None:
    """Records and observations written by the protection come back per instance with
    their evidence, and give a rate above the fleet prior for the instance that failed."""
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    for i in range(3):
        store.add(OutcomeRecord(f"a:{i}", "db-a", "near_miss", i * DAY, 7200.0))
        store.observe(f"a:{i}", i * DAY + 60, "failed", "endpoint_probe")
        store.add(OutcomeRecord(f"b:{i}", "db-b", "cutover", i * DAY, 7200.0,
                                policy_decided=True))
        store.observe(f"b:{i}", i * DAY + 60, "healthy", "endpoint_probe")
    history = store.history(since=0.0)
    assert [h.instance_id for h in history].count("db-a") == 3
    assert store.history(since=0.0, instance_ids=["db-b"])[0].observations[0][0] == (
        "endpoint_probe")
    evidence = [OutcomeEvidence(h.instance_id, h.at, label_outcome(
        h.kind, h.policy_decided, [Evidence(s, st, at) for s, st, at in h.observations],
        h.at, h.horizon_s)) for h in history]
    rates = failure_rates(evidence, 3 * DAY)
    assert rates["db-a"] > HistoryConfig().fleet_prior
    assert rates_from_history(history, 3 * DAY) == pytest.approx(rates)
    # db-b's cutovers only looked healthy afterwards: censored, so it keeps the prior.
    assert {e.outcome for e in evidence if e.instance_id == "db-b"} == {"censored"}
