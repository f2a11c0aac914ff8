"""Record the workflow histories the replay tests replay (``make histories``).

Not collected by ``make test`` (the file name does not start with ``test_``): run it when a
change to workflow code is meant to change what workflows record, and commit the histories
it writes to ``tests/workflows/histories/``. ``tests/workflows/test_replay.py`` then replays
every recorded history against the current workflow code, so a change that would break a
running workflow (a non-deterministic change) fails ``make test``.

Each scenario runs on the real Temporal dev server, PostgreSQL, HAProxy and Pulumi, as the
other workflow tests do.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.agent_tasks import AgentHello, AgentTask
from contracts.policy import PolicyChange
from contracts.protection import (
    CutoverRequest,
    ExternalEvent,
    ProtectionApi,
    ProtectionState,
    RiskReport,
    UnprotectRequest,
)
from contracts.retraining import RetrainingConfig, RetrainingInput
from contracts.version import VERSION
from contracts.watch import WatchFleetInput, watcher_id
from infra.local.postgres import PgServer, alter_system
from tests.conftest import LocalService, local_request, with_spec
from workers.protect import ensure_fleet_watcher, start_protection
from workers.registry import new_worker
from workers.settings import Settings
from workflows.host_task import HostTaskWorkflow, host_task_workflow_id
from workflows.protection import InstanceProtectionWorkflow
from workflows.retraining import ModelRetrainingWorkflow, ObserveOutcomesWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"


async def _save(client: Client, workflow_id: str, name: str,
                run_id: str | None = None) -> None:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json())


async def _phase(handle: WorkflowHandle[Any, Any], check: Any, timeout_s: float = 240) -> Any:
    async with asyncio.timeout(timeout_s):
        while not check(status := await handle.query(ProtectionApi.status)):
            await asyncio.sleep(0.2)
    return status


async def test_record_protection_lifecycle(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Protect → protected → messages → operator cutover → rejoin → protected → emergency
    cutover of a dead primary → retire → protected → unprotect: the protection's history and
    both cutover children."""
    with local_service.primary.endpoint.connect() as conn:
        alter_system(conn, "wal_log_hints", "on")
    local_service.primary.stop()
    local_service.primary.start()
    client = temporal_env.client
    spec = with_spec(local_service.request, tier=1).spec
    spec.policy.cooldown_s = 0
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await start_protection(client, spec, task_queue=task_queue)
            await _phase(handle, lambda s: s.phase == "protected")
            await handle.signal(ProtectionApi.report_risk,
                                RiskReport(42.0, 0.3, "hold", 1_790_000_000.0, spec.instance_id))
            await handle.signal(ProtectionApi.report_event,
                                ExternalEvent("system-maintenance", "reboot at 02:00", 0.1))
            await handle.execute_update(ProtectionApi.set_policy, PolicyChange(threshold=70))
            await handle.signal(ProtectionApi.pause)
            await handle.signal(ProtectionApi.resume)
            await handle.execute_update(ProtectionApi.request_cutover,
                                        CutoverRequest("recorded switchover"))
            await _phase(handle, lambda s: s.recoveries == ["rejoined"] and
                         s.phase == "protected")
            await _save(client, f"cutover-{spec.instance_id}", "cutover-planned")
            # The serving node (the former shadow) dies: an emergency cutover back.
            shadow_home = settings.state_dir / "instances" / spec.instance_id / "shadow"
            await asyncio.to_thread(PgServer(home=shadow_home, port=spec.shadow_port).kill)
            await handle.execute_update(ProtectionApi.request_cutover,
                                        CutoverRequest("recorded failover", emergency=True,
                                                       trigger="failure-detection"))
            await _phase(handle, lambda s: len(s.recoveries) == 2 and s.phase == "protected")
            await _save(client, f"cutover-{spec.instance_id}", "cutover-emergency")
            await handle.execute_update(ProtectionApi.unprotect,
                                        UnprotectRequest("recorded unprotect"))
            await asyncio.wait_for(handle.result(), 120)
    await _save(client, spec.workflow_id, "protection-lifecycle")


async def test_record_protection_continued_as_new(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """A protected protection whose history crosses its limit under messages: the first run
    ends continued as new, carrying its state."""
    client = temporal_env.client
    spec = local_request("db-replay", 21001, 21002, 21003).spec
    state = ProtectionState(spec=spec, phase="protected", shadow_healthy=True,
                            continue_as_new_events=40)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, args=[spec, state],
                id=f"{spec.workflow_id}-{uuid.uuid4().hex[:6]}", task_queue=task_queue)
            latest = client.get_workflow_handle(handle.id)
            for i in range(30):
                await latest.signal(ProtectionApi.report_event,
                                    ExternalEvent("hardware-warning", f"#{i}", 0.1))
            async with asyncio.timeout(60):
                while (await latest.describe()).run_id == handle.first_execution_run_id:
                    await asyncio.sleep(0.2)
            await latest.terminate("recorded")
    await _save(client, handle.id, "protection-continued-as-new",
                run_id=handle.first_execution_run_id)


async def test_record_watcher(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """The fleet watcher's workflow through its bounded activity runs to continue-as-new."""
    client = temporal_env.client
    watch = WatchFleetInput(sample_interval_s=0.2, discovery_interval_s=0.5, max_duration_s=0.5)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await ensure_fleet_watcher(client, task_queue=task_queue, request=watch)
            async with asyncio.timeout(120):
                while (await client.get_workflow_handle(
                        watcher_id(task_queue)).describe()).run_id == \
                        handle.first_execution_run_id:
                    await asyncio.sleep(0.5)
            await client.get_workflow_handle(watcher_id(task_queue)).terminate("recorded")
    await _save(client, watcher_id(task_queue), "watcher",
                run_id=handle.first_execution_run_id)


async def test_record_retraining_and_outcomes(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """One retraining run (small config) and one outcome observation round."""
    client = temporal_env.client
    small = RetrainingConfig(instances=60, days=3.0, seed=11, use_nab=False, num_threads=1)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            retrain = f"retrain-{uuid.uuid4().hex[:6]}"
            await client.execute_workflow(ModelRetrainingWorkflow.run, RetrainingInput(small),
                                          id=retrain, task_queue=task_queue)
            observe = f"observe-{uuid.uuid4().hex[:6]}"
            await client.execute_workflow(ObserveOutcomesWorkflow.run, id=observe,
                                          task_queue=task_queue)
    await _save(client, retrain, "retraining")
    await _save(client, observe, "observe-outcomes")



async def test_record_host_task_without_its_agent(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """A host task whose host has no agent: the pickup timeout ends it with AgentDown."""
    client = temporal_env.client
    task = AgentTask(f"h{uuid.uuid4().hex[:6]}", hello=AgentHello(VERSION))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                HostTaskWorkflow.run, task, id=host_task_workflow_id(task),
                task_queue=task_queue)
            with contextlib.suppress(WorkflowFailureError):
                await handle.result()
    await _save(client, handle.id, "host-task-agent-down")
