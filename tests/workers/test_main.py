"""``python -m workers.main`` as an operator runs it: bad input exits 2, SIGTERM drains."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.watch import watcher_id
from tests.conftest import temporal_binary, worker_env
from workers.settings import REPO_ROOT, Settings


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.main"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration  # starts a server or our program
def test_bad_setting_exits_2_with_one_line(settings: Settings) -> None:
    """A malformed variable stops the worker before it starts anything."""
    done = _run(worker_env(settings, SHADOWSHIFT_LOG_LEVEL="chatty"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "SHADOWSHIFT_LOG_LEVEL" in done.stderr


@pytest.mark.integration  # starts a server or our program
def test_missing_passphrase_exits_2(settings: Settings, tmp_path: Path) -> None:
    """A missing passphrase file is named in a one-line error."""
    done = _run(worker_env(settings, SHADOWSHIFT_PULUMI_PASSPHRASE_FILE=str(tmp_path / "nope")))
    assert done.returncode == 2 and "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE" in done.stderr


@pytest.mark.integration  # starts a server or our program
def test_unreachable_temporal_exits_2(settings: Settings) -> None:
    """An address where no Temporal listens is reported, not retried forever."""
    done = _run(worker_env(settings, SHADOWSHIFT_TEMPORAL_ADDRESS="127.0.0.1:1"))
    assert done.returncode == 2
    assert "cannot reach Temporal at 127.0.0.1:1" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_worker_polls_and_stops_on_sigterm(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str
) -> None:
    """Against a real dev server the worker starts polling and exits 0 on SIGTERM."""
    address = temporal_env.client.service_client.config.target_host
    env = worker_env(settings, watcher=True, SHADOWSHIFT_TEMPORAL_ADDRESS=address,
                     SHADOWSHIFT_TASK_QUEUE=task_queue)
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.main"],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "Worker polling" not in line:
            line = worker.stderr.readline()
            assert line or worker.poll() is None, "worker exited before polling"
        assert "Worker polling" in line
        # The worker started its queue's fleet watcher: without it nothing scores protections.
        assert _watcher_status(address, task_queue) == "WORKFLOW_EXECUTION_STATUS_RUNNING"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert "Worker stopped." in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
        _temporal(address, "workflow", "terminate", "-w", watcher_id(task_queue))


def _temporal(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([temporal_binary(), *args, "--address", address, "-o", "json"],
                          capture_output=True, text=True, timeout=30)


def _watcher_status(address: str, task_queue: str) -> str:
    done = _temporal(address, "workflow", "describe", "-w", watcher_id(task_queue))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)["workflowExecutionInfo"]
    return str(info["status"])
