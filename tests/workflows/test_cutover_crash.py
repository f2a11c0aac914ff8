"""The activity worker (``python -m workers.main``) SIGKILLed at every step boundary of a
cutover, and once inside the combined critical path: a new worker finishes it consistently."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.cutover import CutoverInput, CutoverResult, cutover_workflow_id
from tests.conftest import LocalService, polled, worker_env
from tests.workflows.test_cutover import Protected, protect
from workers.settings import REPO_ROOT, Settings
from workers.workload import Writer, missing_acked
from workflows.cutover import CutoverWorkflow

STEPWISE_BOUNDARIES = [
    "preflight_cutover", "fence_primary", "catch_up_shadow", "promote_shadow", "shift_traffic",
    "verify_cutover",
]


class ActivityWorkers:
    """Subprocess workers on one task queue; the current one can be SIGKILLed."""

    def __init__(self, settings: Settings, address: str, task_queue: str) -> None:
        self.settings, self.address, self.task_queue = settings, address, task_queue
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        env = worker_env(self.settings, SHADOWSHIFT_TEMPORAL_ADDRESS=self.address,
                         SHADOWSHIFT_TASK_QUEUE=self.task_queue)
        log_file = self.settings.state_dir / f"worker-{len(self.processes)}.log"
        with log_file.open("ab") as log:
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "workers.main"], cwd=REPO_ROOT, env=env, stderr=log,
                start_new_session=True,
            ))

    def kill(self) -> None:
        process = self.processes[-1]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)


@pytest.fixture
def activity_workers(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str
) -> Iterator[ActivityWorkers]:
    address = temporal_env.client.service_client.config.target_host
    workers = ActivityWorkers(settings, address, f"{task_queue}-activities")
    yield workers
    workers.stop_all()


async def _completed(handle: WorkflowHandle, activity_type: str) -> bool:
    scheduled: dict[int, str] = {}
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        if event.HasField("activity_task_completed_event_attributes"):
            attrs = event.activity_task_completed_event_attributes
            if scheduled.get(attrs.scheduled_event_id) == activity_type:
                return True
    return False


def _workflow_worker(client: Client, task_queue: str, pool: concurrent.futures.Executor) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[CutoverWorkflow], activities=[],
                  activity_executor=pool)


def _assert_consistent(protected: Protected, result: CutoverResult, writer: Writer) -> None:
    primary, shadow = protected.nodes
    assert result.outcome == "completed", result.detail
    assert protected.platform.get_weights() == {primary: 0, shadow: 100}
    assert not protected.platform.probe(primary).writable
    assert protected.platform.probe(shadow).writable
    assert missing_acked(protected.service.shadow, writer.stats.acked_ids) == []


async def test_sigkill_at_every_step_boundary(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, activity_workers: ActivityWorkers,
) -> None:
    """One activity per step; after each step completes the worker is SIGKILLed and a new
    one started. The cutover ends completed, nothing acked is lost, no split brain. A second
    cutover requested meanwhile is refused and changes nothing."""
    protected = await protect(local_service, settings, tier=1)
    client = temporal_env.client
    request = CutoverInput(protected.request, combine_critical_path=False,
                           activity_task_queue=activity_workers.task_queue)
    workflow_id = cutover_workflow_id(protected.request.instance_id)
    activity_workers.start()
    with Writer(local_service.router, rate=100) as writer, protected.monitor() as monitor, \
            concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with _workflow_worker(client, task_queue, pool):
            handle = await client.start_workflow(
                CutoverWorkflow.run, request, id=workflow_id, task_queue=task_queue)
            other: WorkflowHandle | None = None
            for boundary in STEPWISE_BOUNDARIES:
                deadline = time.monotonic() + 90
                while not await _completed(handle, boundary):
                    assert time.monotonic() < deadline, f"{boundary} never completed"
                    await asyncio.sleep(0.01)
                activity_workers.kill()
                if boundary == "fence_primary":  # mid-cutover: two ways to ask for another
                    with pytest.raises(WorkflowAlreadyStartedError):
                        await client.start_workflow(
                            CutoverWorkflow.run, request, id=workflow_id, task_queue=task_queue)
                    other = await client.start_workflow(
                        CutoverWorkflow.run, request, id=f"other-{uuid.uuid4().hex[:6]}",
                        task_queue=task_queue)
                activity_workers.start()
            result = await asyncio.wait_for(handle.result(), timeout=120)
            assert other is not None
            with pytest.raises(WorkflowFailureError) as refused:
                await asyncio.wait_for(other.result(), timeout=60)
    _assert_consistent(protected, result, writer)
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "CutoverRejected"
    assert f"cutover {workflow_id} of" in cause.message and "in progress" in cause.message
    assert [r["workflow_id"] for r in _records(protected)] == [workflow_id]
    assert monitor.report.split_brain_observations == 0, monitor.report.events
    protected.platform.close()


async def test_sigkill_inside_combined_critical_path(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, activity_workers: ActivityWorkers,
) -> None:
    """The worker dies inside ``switch_over`` right after the fence ended client sessions;
    the retry on a new worker re-runs the idempotent steps and completes the cutover."""
    protected = await protect(local_service, settings, tier=2)
    client = temporal_env.client
    request = CutoverInput(protected.request, activity_task_queue=activity_workers.task_queue)
    activity_workers.start()
    await polled(client, activity_workers.task_queue)  # the window excludes its start-up
    watcher = psycopg.connect(local_service.primary.endpoint.conninfo(), autocommit=True)
    with Writer(local_service.router, rate=100) as writer, \
            concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with _workflow_worker(client, task_queue, pool):
            handle = await client.start_workflow(
                CutoverWorkflow.run, request,
                id=cutover_workflow_id(protected.request.instance_id), task_queue=task_queue)
            # The fence terminates every client session, this one included: kill right then.
            await asyncio.to_thread(_wait_until_terminated, watcher)
            activity_workers.kill()
            activity_workers.start()
            result = await asyncio.wait_for(handle.result(), timeout=120)
    _assert_consistent(protected, result, writer)
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) >= 2, "switch_over was expected to be retried after the kill"
    protected.platform.close()


def _wait_until_terminated(conn: psycopg.Connection, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            conn.execute("SELECT 1")
            time.sleep(0.001)
    except psycopg.OperationalError:
        return
    raise AssertionError("the fence never ended the watcher's session")


def _records(protected: Protected) -> list[dict[str, object]]:
    folder = protected.platform.spec.state_dir / "instances" / protected.request.instance_id
    lines = (folder / "cutovers.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]
