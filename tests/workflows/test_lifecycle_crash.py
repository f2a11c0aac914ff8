"""The worker process (``python -m workers.main``) SIGKILLed while it rejoins the former
primary: a new worker resumes the protection's recovery, and it ends protected."""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.protection import ProtectionStatus
from contracts.shadow import ShadowActivities
from infra.local.postgres import PgEndpoint
from tests.conftest import LocalService
from tests.workflows.test_cutover_crash import ActivityWorkers
from tests.workflows.test_lifecycle import MIGRATE, _rewindable, _spec, _stream_state
from workers.settings import Settings
from workers.workload import Writer, missing_acked, prepare_table
from workflows.protection import InstanceProtectionWorkflow

REJOIN = ShadowActivities.rejoin_former_primary.__name__
"""The rejoin activity's type name (its function's name)."""


async def _status(handle: WorkflowHandle) -> ProtectionStatus | None:
    try:
        status: ProtectionStatus = await handle.query(InstanceProtectionWorkflow.status)
    except Exception:  # no worker to answer right now
        return None
    return status


async def _running(handle: WorkflowHandle, activity_type: str) -> bool:
    description = await handle.describe()
    return any(
        pending.activity_type.name == activity_type
        and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for pending in description.raw_description.pending_activities
    )


async def _attempts(handle: WorkflowHandle, activity_type: str) -> list[int]:
    """Attempt numbers of the finished executions of ``activity_type``, from the history."""
    history = await handle.fetch_history()
    scheduled = {
        event.event_id for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    return [
        event.activity_task_started_event_attributes.attempt for event in history.events
        if event.HasField("activity_task_started_event_attributes")
        and event.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


async def test_worker_killed_while_rejoining_resumes_to_protected(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """SIGKILL of the only worker in the middle of the rejoin: the roles in the workflow's
    state survive, the next worker finishes the recovery (rejoined, or retired and re-seeded
    if the kill left the rewind unusable), and no acknowledged write is lost."""
    _rewindable(local_service)
    spec = _spec(local_service)
    original, shadow = spec.instance_id, f"{spec.instance_id}-shadow"
    address = temporal_env.client.service_client.config.target_host
    workers = ActivityWorkers(settings, address, task_queue)
    workers.start()
    try:
        handle = await temporal_env.client.start_workflow(
            InstanceProtectionWorkflow.run, spec,
            id=spec.workflow_id, task_queue=task_queue,
        )
        async with asyncio.timeout(120):
            while not ((s := await _status(handle)) and s.phase == "protected"):
                await asyncio.sleep(0.2)
        prepare_table(local_service.router)
        with Writer(local_service.router, rate=50) as writer:
            await handle.execute_update(InstanceProtectionWorkflow.request_cutover, MIGRATE)
            async with asyncio.timeout(120):
                while not await _running(handle, REJOIN):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # inside it: stopping the server, rewinding, restarting
            workers.kill()
            killed = await _status(handle)
            workers.start()
            async with asyncio.timeout(180):
                while not ((s := await _status(handle)) and s.phase == "protected"
                           and s.recoveries):
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
        attempts = await _attempts(handle, REJOIN)
        print(f"recoveries {s.recoveries}, rejoin attempts {attempts}, log {s.log[-4:]}")
        assert killed is None or killed.phase == "recovering"
        # The killed attempt did not finish: the one that did is a retry.
        assert (await _attempts(handle, REJOIN))[0] >= 2 \
            or s.recoveries == ["retired"]
        assert s.recoveries in (["rejoined"], ["retired"]) and s.primary_node == shadow
        assert s.cutovers == 1 and s.shadow_healthy
        assert local_service.haproxy.weights(spec.instance_id) == {original: 0, shadow: 100}
        assert _stream_state(local_service.shadow, original) == (
            "streaming", "sync", f'FIRST 1 ("{original}")')
        with PgEndpoint(port=spec.primary_port).connect() as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert writer.stats.acked_ids
        assert missing_acked(local_service.shadow, writer.stats.acked_ids) == []
        await handle.terminate("test over")
    finally:
        workers.stop_all()
