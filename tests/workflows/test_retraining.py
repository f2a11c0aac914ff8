"""The retraining schedule promotes a better model, refuses a worse one, and a scorer built
before the promotion (as a running worker's fleet watcher holds one) scores with the promoted
model at its next batch, without a restart (real dev server, real LightGBM training)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import uuid

from temporalio import workflow
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.scoring import FleetScorer, MetricWindow, ScoreInstancesInput
from contracts.outcomes import OutcomeEvidence, RecordOutcomeInput
from contracts.retraining import RetrainingConfig, RetrainingInput, RetrainingResult
from contracts.wire import DATA_CONVERTER
from infra.local.ports import free_port
from models.registry import ModelRegistry
from models.retraining import train_candidate
from tests.conftest import local_request
from workers.registry import (
    WORKFLOWS,
    build_activities,
    model_registry,
    new_worker,
    outcomes_store,
)
from workers.schedules import ScheduleConfig, ensure_schedules
from workers.settings import Settings
from workflows.retraining import ModelRetrainingWorkflow
from workflows.retraining_hooks import record_outcome, report_outcome_evidence

# Small enough to train in a few seconds, large enough (≈ 350 held-out failures) to compare.
SMALL = RetrainingConfig(instances=60, days=3.0, seed=11, use_nab=False, num_threads=1)
SHUFFLED = RetrainingConfig(instances=60, days=3.0, seed=11, use_nab=False, num_threads=1,
                            label_permutation_seed=1)


@workflow.defn(sandboxed=False)
class CutoverThenRetireWorkflow:
    """Test driver: what the protection does after a cutover whose former primary is then
    retired on purpose."""

    @workflow.run
    async def run(self, port: int) -> None:
        """Record the cutover twice (a retry), then report final evidence."""
        now = workflow.now().timestamp()
        instance = local_request("db-1", port, port + 1, port + 2)
        record = RecordOutcomeInput("wf:cutover:1", instance, "cutover", now, "test", 62.0,
                                    0.7, horizon_s=3600.0)
        await record_outcome(record)
        await record_outcome(record)
        await report_outcome_evidence(
            OutcomeEvidence(instance, "healthy", now + 1, "recovery", "retired alive",
                            final=True))


def _request() -> ScoreInstancesInput:
    times = [1_700_000_000.0 + 300.0 * i for i in range(12)]
    cpu: list[float | None] = [40.0 + 4.0 * i for i in range(12)]
    return ScoreInstancesInput([MetricWindow("db-1", times, {"cpu_percent": cpu})], times[-1])


async def _trigger_and_wait(client: Client, handle: ScheduleHandle) -> RetrainingResult:
    """Trigger the schedule now and wait for the run it starts."""
    before = len((await handle.describe()).info.recent_actions)
    await handle.trigger()
    async with asyncio.timeout(60):
        while True:
            actions = (await handle.describe()).info.recent_actions
            if len(actions) > before:
                break
            await asyncio.sleep(0.2)
    started = actions[-1].action
    assert isinstance(started, ScheduleActionExecutionStartWorkflow)
    run = client.get_workflow_handle(started.workflow_id, run_id=started.first_execution_run_id,
                                     result_type=RetrainingResult)
    async with asyncio.timeout(180):
        return await run.result()


async def test_schedule_promotes_better_refuses_worse_and_worker_reloads(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """A champion trained on shuffled labels loses to a challenger trained on true labels and
    is replaced; the running worker then scores with the new version. A second challenger
    trained on shuffled labels loses to it and is refused; the worker keeps the version."""
    client = temporal_env.client
    registry = model_registry(settings)
    weak = train_candidate(SHUFFLED, [], settings.state_dir / "seed" / "pae.txt")
    assert registry.promote(weak.model_path, candidate_id="seed-weak").version == 1
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    better = ScheduleConfig(prefix=prefix, retraining=SMALL)
    worse = ScheduleConfig(prefix=f"{prefix}-worse", retraining=SHUFFLED)
    scorer = FleetScorer.from_registry(model_registry(settings))  # as a worker holds it
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            assert scorer.score(_request()).model_version == 1
            created = await ensure_schedules(client, task_queue, better)
            assert created == {better.retrain_id: True}
            again = await ensure_schedules(client, task_queue, better)
            assert again == {better.retrain_id: False}
            await ensure_schedules(client, task_queue, worse)
            try:
                result = await _trigger_and_wait(
                    client, client.get_schedule_handle(better.retrain_id))
                evaluation = result.evaluation
                assert evaluation.champion_version == 1
                assert evaluation.challenger_score >= evaluation.champion_score + SMALL.min_gain
                assert result.promotion.promoted and result.promotion.version == 2
                scored = scorer.score(_request())
                assert scored.model_version == 2
                assert scored.model_sha256 == result.challenger.model_sha256

                refused = await _trigger_and_wait(
                    client, client.get_schedule_handle(worse.retrain_id))
                assert refused.evaluation.champion_version == 2
                assert refused.evaluation.challenger_score < refused.evaluation.champion_score
                assert not refused.promotion.promoted and refused.promotion.version == 2
                assert "does not beat" in refused.promotion.reason
                assert scorer.score(_request()).model_version == 2
            finally:
                for schedule_id in (better.retrain_id, worse.retrain_id):
                    await client.get_schedule_handle(schedule_id).delete()
    decisions = ModelRegistry(registry.root).decisions()
    assert [d["decision"] for d in decisions] == ["promoted", "promoted", "refused"]
    last = decisions[-1]
    assert last["champion_score"] == refused.evaluation.champion_score
    assert last["challenger_score"] == refused.evaluation.challenger_score


async def test_protection_hooks_record_once_and_stop_probing_a_retired_node(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """The hooks store a cutover once however often they are called; final evidence from the
    recovery path stops the probes, so the retired node's closed port is not a failure."""
    client = temporal_env.client
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue,
                              extra_workflows=[CutoverThenRetireWorkflow]):
            await client.execute_workflow(CutoverThenRetireWorkflow.run, free_port(),
                                          id=f"hooks-{uuid.uuid4().hex[:8]}",
                                          task_queue=task_queue)
    store = outcomes_store(settings)
    [record] = store.all()
    assert (record.record_id, record.kind, record.port) == ("wf:cutover:1", "cutover", None)
    store.resolve(record.at + record.horizon_s)
    assert store.get("wf:cutover:1").outcome == "healthy"  # type: ignore[union-attr]


async def test_runs_finish_when_workers_have_their_own_state_dirs(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """Two workers with separate state dirs poll one queue: every retraining run trains,
    evaluates and decides on one worker (its candidate files are there), so every run
    finishes, and its decision is in exactly that worker's registry."""
    other = dataclasses.replace(settings, state_dir=settings.state_dir.parent / "other")
    other.state_dir.mkdir(mode=0o755)
    client = temporal_env.client
    # Workflows on a worker without activities (so no activity is dispatched eagerly to the
    # worker that scheduled it), activities on two workers; one client may not run two
    # activity workers on a queue, so the second has its own connection (another process).
    second = await Client.connect(client.service_client.config.target_host,
                                  data_converter=DATA_CONVERTER)
    results = []
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS), \
                Worker(client, task_queue=task_queue, activity_executor=pool,
                       activities=build_activities(settings, client)), \
                Worker(second, task_queue=task_queue, activity_executor=pool,
                       activities=build_activities(other, second)):
            for _ in range(3):
                results.append(await client.execute_workflow(
                    ModelRetrainingWorkflow.run, RetrainingInput(SMALL),
                    id=f"retrain-{uuid.uuid4().hex[:8]}", task_queue=task_queue))
    for result in results:
        where = [s for s in (settings, other) if any(
            d["candidate_id"] == result.candidate_id for d in model_registry(s).decisions())]
        assert len(where) == 1, result.candidate_id
