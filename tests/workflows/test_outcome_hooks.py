"""A protection's cutover becomes an outcome record that is watched and resolved (real
PostgreSQL, HAProxy, Pulumi and Temporal)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment

from activities.outcomes_store import OutcomeRecord
from contracts.policy import Policy
from contracts.protection import (
    PREDICTION,
    CutoverRequest,
    LastCutover,
    ProtectionState,
    RiskReport,
)
from contracts.spec import ProtectionSpec
from infra.local.postgres import alter_system
from tests.conftest import LocalService, with_spec
from workers.registry import new_worker, outcomes_store
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow
from workflows.retraining import ObserveOutcomesWorkflow
from workflows.retraining_hooks import cutover_record, record_outcome

RISK = RiskReport(readiness_score=82.0, failure_probability=0.91, decision="migrate", at=0.0)
MIGRATE = CutoverRequest("readiness score 82 crossed the threshold", trigger=PREDICTION)


@workflow.defn(sandboxed=False)
class FirstCutoverWorkflow:
    """Test driver: what a protection records at its first cutover (the real hooks)."""

    @workflow.run
    async def run(self, spec: ProtectionSpec) -> str:
        """Record cutover number 1; returns its record id."""
        now = workflow.now().timestamp()
        state = ProtectionState(spec=spec, cutovers=1, last_cutover_at=now, latest_risk=RISK,
                                first_run_id=workflow.info().first_execution_run_id,
                                last_cutover=LastCutover(now, PREDICTION, "test", "completed"))
        record = cutover_record(state, "test", by_policy=True)
        await record_outcome(record)
        return record.record_id


async def test_protecting_an_instance_again_records_its_cutovers_anew(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """Protect, cut over, unprotect, protect again, cut over: the workflow id is the same
    (``protect-<instance>``) and the count restarts at 1, yet both cutovers are stored — the
    record id names the protection's first run."""
    spec = ProtectionSpec("db-again", "local", 2, 15432, 15433, 15434)
    client = temporal_env.client
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue,
                              extra_workflows=[FirstCutoverWorkflow]):
            ids = []
            for _ in range(2):
                handle = await client.start_workflow(FirstCutoverWorkflow.run, spec,
                                                     id=spec.workflow_id, task_queue=task_queue)
                ids.append(await handle.result())
                assert ids[-1] == f"{spec.workflow_id}:{handle.first_execution_run_id}:cutover:1"
    assert ids[0] != ids[1]
    stored = [r for r in outcomes_store(settings).all() if r.instance_id == "db-again"]
    assert sorted(r.record_id for r in stored) == sorted(ids)


async def test_cutover_is_recorded_then_watched_after_the_rejoin(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """A predicted cutover is recorded once with the score that caused it and no endpoint
    (the cutover stops the former primary on purpose); once the former primary rejoins as the
    shadow the recovery points the probes at it, the observer finds it healthy, and after the
    horizon the outcome is healthy."""
    with local_service.primary.endpoint.connect() as conn:
        alter_system(conn, "wal_log_hints", "on")  # so the former primary can rejoin
    local_service.primary.stop()
    local_service.primary.start()
    request = local_service.request
    spec = with_spec(request, policy=Policy(threshold=60, cooldown_s=0)).spec
    client = temporal_env.client
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, spec,
                id=spec.workflow_id, task_queue=task_queue)
            try:
                async with asyncio.timeout(240):
                    while (await handle.query(InstanceProtectionWorkflow.status)).phase \
                            != "protected":
                        await asyncio.sleep(0.2)
                    # The fleet watcher's report, then its request (the policy decided).
                    await handle.signal(InstanceProtectionWorkflow.report_risk, RISK)
                    await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                                MIGRATE)
                    while True:
                        status = await handle.query(InstanceProtectionWorkflow.status)
                        if status.recoveries and status.phase == "protected":
                            break
                        await asyncio.sleep(0.2)
                assert status.recoveries == ["rejoined"], status.log
                observed = await client.execute_workflow(
                    ObserveOutcomesWorkflow.run, id=f"observe-{uuid.uuid4().hex[:8]}",
                    task_queue=task_queue)
            finally:
                await handle.terminate("test over")
    store = outcomes_store(settings)
    [record] = store.all()
    assert (record.record_id, record.kind) == (
        f"{spec.workflow_id}:{handle.first_execution_run_id}:cutover:1", "cutover")
    assert (record.readiness_score, record.failure_probability) == (82.0, 0.91)
    assert record.policy_decided, record.reason  # a false migration if it stays healthy
    assert record.port == request.spec.primary_port  # the former primary, watched again
    assert observed["observed_healthy"] == 1 and observed["observed_failed"] == 0
    store.resolve(record.at + record.horizon_s)
    resolved = store.get(record.record_id)
    assert isinstance(resolved, OutcomeRecord) and resolved.outcome == "healthy"
