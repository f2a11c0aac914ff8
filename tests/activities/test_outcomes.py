"""Outcome records: stored once, observed on real PostgreSQL, resolved after their horizon,
and fed to the challenger's training."""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import sqlite3
import time
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.outcomes import OutcomeRecorder, StoreOutcomeActivities
from activities.outcomes_store import OutcomeRecord, OutcomeStore
from activities.retraining import RegistryRetrainingActivities
from contracts.outcomes import OutcomeEvidence, RecordOutcomeInput, ResolveOutcomesInput
from contracts.retraining import RetrainingConfig, TrainChallengerInput
from contracts.shadow import PlatformRequest
from infra.factory import Platforms
from infra.local.ports import free_port
from infra.local.postgres import PgServer
from infra.platform import PlatformContext
from models.registry import ModelRegistry
from models.retraining import build
from tests.conftest import local_request
from workers.settings import Settings

T0 = 1_800_000_000.0
HOUR = 3600.0


def _activities(store: OutcomeStore, state_dir: Path) -> StoreOutcomeActivities:
    """The outcome activities; the platforms (no Pulumi needed) say where nodes are probed."""
    return StoreOutcomeActivities(store, Platforms(PlatformContext(None, state_dir)))


def _instance(instance_id: str, port: int = 15432) -> PlatformRequest:
    """A local instance whose original primary listens on ``port``."""
    return local_request(instance_id, port, port + 1, port + 2)


def _window(at: float, cpu: float) -> dict[str, object]:
    times = [at - 300.0 * i for i in range(11, -1, -1)]
    return {"timestamps": times, "values": {"cpu_percent": [cpu] * 12,
                                            "memory_percent": [cpu / 2] * 12}}


def test_records_are_idempotent_and_resolve_to_the_worst_evidence(tmp_path: Path) -> None:
    """A record is stored once; after its horizon the worst observation inside the horizon
    is its outcome; evidence outside the horizon does not count; no evidence is unknown."""
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    activities = _activities(store, tmp_path)
    env = ActivityEnvironment()
    cutover = RecordOutcomeInput("wf:cutover:1", _instance("db-1", 5999), "cutover", T0,
                                 probe_node="db-1", horizon_s=HOUR)
    assert env.run(activities.record_outcome, cutover) is True
    assert env.run(activities.record_outcome, cutover) is False
    env.run(activities.record_outcome,
            RecordOutcomeInput("wf:refused:1", _instance("db-2"), "refused", T0, horizon_s=HOUR))
    for at, status in ((T0 + 60, "healthy"), (T0 + 600, "degraded"), (T0 + 2 * HOUR, "failed")):
        store.observe("wf:cutover:1", at, status, "probe")
    assert env.run(activities.report_outcome_evidence,
                   OutcomeEvidence(_instance("db-1"), "healthy", T0 + 900, "recovery")) == 1
    assert env.run(activities.resolve_outcomes, ResolveOutcomesInput(T0 + HOUR - 1)) == {
        "healthy": 0, "degraded": 0, "failed": 0, "unknown": 0}
    assert env.run(activities.resolve_outcomes, ResolveOutcomesInput(T0 + HOUR)) == {
        "healthy": 0, "degraded": 1, "failed": 0, "unknown": 1}
    assert [(r.record_id, r.outcome) for r in store.all()] == [
        ("wf:cutover:1", "degraded"), ("wf:refused:1", "unknown")]
    with pytest.raises(ApplicationError, match="use one of cutover, refused, near_miss"):
        env.run(activities.record_outcome, RecordOutcomeInput("x", _instance("db-3"), "maybe",
                                                              T0))


@pytest.mark.integration  # starts a server or our program
async def test_probes_tell_a_live_instance_from_a_dead_one(
    tmp_path: Path, settings: Settings,
) -> None:
    """The observer probes each open record's endpoint: a running PostgreSQL is healthy, a
    port where nothing answers is failed (the watcher's periodic probe at most once per
    interval); both outcomes follow after the horizon."""
    server = PgServer(home=settings.state_dir / "pg", port=free_port())
    server.init()
    server.start()
    try:
        store = OutcomeStore(tmp_path / "outcomes.sqlite")
        activities = _activities(store, tmp_path)
        env = ActivityEnvironment()
        now = time.time()
        env.run(activities.record_outcome, RecordOutcomeInput(
            "live", _instance("db-live", server.port), "cutover", now, probe_node="db-live",
            horizon_s=HOUR))
        env.run(activities.record_outcome, RecordOutcomeInput(
            "dead", _instance("db-dead", free_port()), "cutover", now,
            probe_node="db-dead-shadow", horizon_s=HOUR))
        result = env.run(activities.observe_outcomes)
        assert result.probed == 2
        assert result.statuses == {"healthy": 1, "degraded": 0, "failed": 1}
        # The fleet watcher's path: at most one round per interval.
        recorder = OutcomeRecorder(store, probe_interval_s=3600.0)
        first = recorder.probe_if_due()
        assert first is not None and first.statuses == result.statuses
        assert recorder.probe_if_due() is None
        env.run(activities.resolve_outcomes, ResolveOutcomesInput(now + HOUR + 1))
        assert {r.record_id: r.outcome for r in store.all()} == {"live": "healthy",
                                                                 "dead": "failed"}
    finally:
        server.stop(mode="immediate")


def test_near_misses_are_recorded_once_and_windows_reach_later_records(tmp_path: Path) -> None:
    """A hold just under the threshold is a near miss (once per horizon), a hold above it a
    refused cutover; far below or a migrate decision is neither; a cutover recorded without a
    window gets the remembered one."""
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    recorder = OutcomeRecorder(store, margin=20.0, horizon_s=HOUR)
    endpoint = ("127.0.0.1", 5432)
    assert recorder.note_risk("db-1", T0, 35.0, "hold", 50.0, _window(T0, 70.0), endpoint)
    assert not recorder.note_risk("db-1", T0 + 60, 40.0, "hold", 50.0, _window(T0, 75), endpoint)
    assert not recorder.note_risk("db-2", T0, 10.0, "hold", 50.0, _window(T0, 20.0), endpoint)
    assert recorder.note_risk("db-3", T0, 70.0, "hold", 50.0, _window(T0, 95.0), endpoint)
    assert not recorder.note_risk("db-2", T0 + 30, 55.0, "migrate", 50.0, _window(T0, 90.0),
                                  endpoint)
    store.add(OutcomeRecord("wf:cutover:1", "db-2", "cutover", T0 + 60, HOUR))
    records = {r.record_id: r for r in store.all()}
    assert set(records) == {"db-1:near_miss:1800000000", "db-3:refused:1800000000",
                            "wf:cutover:1"}
    assert records["db-3:refused:1800000000"].kind == "refused"
    assert records["db-1:near_miss:1800000000"].readiness_score == 35.0
    cutover_window = records["wf:cutover:1"].window
    assert cutover_window is not None and cutover_window["values"]["cpu_percent"][0] == 90.0


def test_a_store_from_before_the_policy_column_is_upgraded(tmp_path: Path) -> None:
    """A store whose records table predates ``policy_decided`` gains the column on first
    use; its policy cutovers (known then only by their reason text) are marked, others not."""
    path = tmp_path / "outcomes.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE records (record_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, "
            "kind TEXT NOT NULL, at REAL NOT NULL, horizon_s REAL NOT NULL, readiness_score "
            "REAL, failure_probability REAL, reason TEXT NOT NULL, host TEXT, port INTEGER, "
            "window_json TEXT, outcome TEXT, resolved_at REAL)")
        for record_id, kind, reason in (
            ("r1", "cutover", "readiness score 81 crossed the threshold"),
            ("r2", "cutover", "operator request"),
            ("r3", "refused", "readiness score 81 crossed the threshold"),
            ("r5", "cutover", "readiness score -4 crossed the threshold"),
            ("r6", "cutover", "Readiness score 81 crossed the threshold"),
            ("r7", "cutover", "readiness score high: operator says it crossed the threshold"),
        ):
            db.execute("INSERT INTO records VALUES (?,?,?,?,?,NULL,NULL,?,NULL,NULL,NULL,NULL,"
                       "NULL)", (record_id, "db-old", kind, T0, HOUR, reason))
    store = OutcomeStore(path)
    assert {r.record_id: r.policy_decided for r in store.all()} == {
        "r1": True, "r2": False, "r3": False, "r5": True, "r6": False, "r7": False}
    assert store.add(OutcomeRecord("r4", "db-old", "cutover", T0, HOUR, policy_decided=True))
    assert store.get("r4") == OutcomeRecord("r4", "db-old", "cutover", T0, HOUR,
                                            policy_decided=True)


def test_resolved_outcomes_become_training_rows(tmp_path: Path) -> None:
    """Resolved records with a window are rows of the challenger's data, labelled from
    evidence the cutover cannot bias: a failure counts whoever saw it, the recovery path's
    "healthy" counts, but an endpoint probe's "healthy" after the load left is censored (not a
    row). Unknown outcomes and records without a window are not rows either; a retried
    training returns the same challenger."""
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    for i in range(10):
        at = T0 + i * HOUR
        store.add(OutcomeRecord(f"r{i}", f"db-{i}", "cutover", at, HOUR,
                                window=_window(at, 95.0 if i % 2 else 30.0)))
        if i < 8:  # 4 failed (probe), 2 healthy by the recovery path, 2 healthy by a probe
            healthy_source = "recovery" if i % 4 == 0 else "probe"
            store.observe(f"r{i}", at + 60, "failed" if i % 2 else "healthy",
                          "probe" if i % 2 else healthy_source)
    store.add(OutcomeRecord("no-window", "db-x", "cutover", T0, HOUR))
    store.observe("no-window", T0 + 60, "failed", "probe")
    store.resolve(T0 + 20 * HOUR)
    assert sum(r.outcome == "unknown" for r in store.all()) == 2
    retraining = RegistryRetrainingActivities(ModelRegistry(tmp_path / "models"), store)
    config = RetrainingConfig(instances=20, days=2.0, seed=3, use_nab=False, num_threads=1)
    env = ActivityEnvironment()
    challenger = env.run(retraining.train_challenger, TrainChallengerInput("run-1", config))
    assert challenger.outcome_rows == 6
    assert challenger.rows == build(config, []).labels.size + 6
    assert challenger.heldout_rows > 0 and math.isfinite(challenger.training_s)
    again = env.run(retraining.train_challenger, TrainChallengerInput("run-1", config))
    assert again == challenger


def test_concurrent_resolvers_resolve_each_record_once(tmp_path: Path) -> None:
    """Two resolvers at once (both scheduled workflows call ``resolve_outcomes``): every due
    record is returned by exactly one of them, so nothing is counted twice or lost."""
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    for n in range(200):
        store.add(OutcomeRecord(f"r{n}", f"db-{n % 7}", "cutover", T0, HOUR))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(store.resolve_due, [T0 + HOUR] * 2))
    ids = [r.record_id for batch in results for r in batch]
    assert sorted(ids) == sorted(f"r{n}" for n in range(200))
    assert all(r.outcome == "unknown" and r.resolved_at == T0 + HOUR
               for batch in results for r in batch)
    assert store.resolve_due(T0 + 2 * HOUR) == []
