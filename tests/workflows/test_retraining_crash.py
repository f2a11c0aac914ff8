"""A worker SIGKILLed while it trains a challenger: the run finishes on another worker."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from models.retraining import RetrainingConfig
from tests.conftest import worker_env
from workers.registry import model_registry
from workers.schedules import ScheduleConfig
from workers.settings import REPO_ROOT, Settings
from workflows.retraining import ModelRetrainingWorkflow, RetrainingInput, RetrainingResult

CONFIG = RetrainingConfig(instances=120, days=3.0, seed=11, use_nab=False, num_threads=1)


async def _worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.main", cwd=REPO_ROOT, env=env, stderr=out,
            start_new_session=True)


async def _wait_training(handle: WorkflowHandle) -> None:
    async with asyncio.timeout(120):
        while True:
            described = await handle.describe()
            if any(p.activity_type.name == "retrain_challenger"
                   and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                   for p in described.raw_description.pending_activities):
                return
            await asyncio.sleep(0.1)


async def test_training_resumes_on_another_worker_after_sigkill(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """The first worker dies mid-training; its heartbeats stop, the training is retried on
    the second worker, and the run ends with one decision for its candidate."""
    client: Client = temporal_env.client
    env = worker_env(settings,
                     SHADOWSHIFT_TEMPORAL_ADDRESS=client.service_client.config.target_host,
                     SHADOWSHIFT_TASK_QUEUE=task_queue)
    log = settings.state_dir / "workers.log"
    first = await _worker(env, log)
    second = None
    try:
        handle = await client.start_workflow(
            ModelRetrainingWorkflow.run, RetrainingInput(CONFIG, heartbeat_timeout_s=5.0),
            id=f"retrain-{uuid.uuid4().hex[:8]}", task_queue=task_queue)
        await _wait_training(handle)
        await asyncio.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        second = await _worker(env, log)
        async with asyncio.timeout(180):
            result: RetrainingResult = await handle.result()
        attempts = [event.activity_task_started_event_attributes.attempt
                    async for event in handle.fetch_history_events()
                    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
        assert max(attempts) >= 2, (attempts, log.read_text()[-2000:])
        decisions = [d for d in model_registry(settings).decisions()
                     if d["candidate_id"] == result.candidate_id]
        assert len(decisions) == 1
        assert decisions[0]["decision"] == ("promoted" if result.promotion.promoted
                                            else "refused")
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await process.wait()
        config = ScheduleConfig(prefix=task_queue)
        for schedule_id in (config.retrain_id,):
            with contextlib.suppress(RPCError):  # absent if the worker never started
                await client.get_schedule_handle(schedule_id).delete()
