"""A starting worker creates the feedback-loop schedules once and leaves existing ones alone."""

from __future__ import annotations

import asyncio
import signal
import sys

from temporalio.testing import WorkflowEnvironment

from tests.conftest import worker_env
from workers.schedules import ScheduleConfig
from workers.settings import REPO_ROOT, Settings


async def _start_worker_until_polling(env: dict[str, str]) -> tuple[asyncio.subprocess.Process,
                                                                      str]:
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.main", cwd=REPO_ROOT, env=env,
        stderr=asyncio.subprocess.PIPE)
    assert worker.stderr is not None
    seen = ""
    async with asyncio.timeout(90):
        while "Worker polling" not in seen:
            line = (await worker.stderr.readline()).decode()
            assert line, f"worker exited before polling:\n{seen}"
            seen += line
    return worker, seen


async def _stop(worker: asyncio.subprocess.Process) -> None:
    worker.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        assert await worker.wait() == 0


async def test_worker_start_creates_schedules_once(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """The first start creates the retraining schedule (and no outcome-probe schedule: the
    fleet watcher probes for free); an operator pauses it; a restart finds it and does not
    undo the pause."""
    client = temporal_env.client
    env = worker_env(settings,
                     SHADOWSHIFT_TEMPORAL_ADDRESS=client.service_client.config.target_host,
                     SHADOWSHIFT_TASK_QUEUE=task_queue)
    config = ScheduleConfig(prefix=task_queue)
    worker, log = await _start_worker_until_polling(env)
    try:
        assert f"Schedule {config.retrain_id} created." in log
        assert config.observe_id not in log
    finally:
        await _stop(worker)
    retrain = client.get_schedule_handle(config.retrain_id)
    try:
        described = await retrain.describe()
        assert described.schedule.action.task_queue == task_queue  # type: ignore[attr-defined]
        await retrain.pause(note="operator: not tonight")
        worker, log = await _start_worker_until_polling(env)
        await _stop(worker)
        assert f"Schedule {config.retrain_id} exists; left as it is." in log
        assert (await retrain.describe()).schedule.state.paused
    finally:
        await retrain.delete()
