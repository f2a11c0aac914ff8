"""A worker SIGKILLed in the middle of provision_shadow: the retry converges on its own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from temporalio.testing import WorkflowEnvironment

from infra.local.postgres import PgServer, query_one
from tests.activities.test_shadow import ProvisionAndSync, ProvisionInput
from tests.conftest import (
    LocalService,
    pulumi_processes,
    runs_provider_host,
    survivors,
    worker_env,
)
from workers.registry import new_worker, pulumi_config
from workers.settings import REPO_ROOT, Settings


def _start_worker(
    settings: Settings, address: str, task_queue: str, log_file: Path
) -> subprocess.Popen[bytes]:
    env = worker_env(settings, SHADOWSHIFT_TEMPORAL_ADDRESS=address,
                     SHADOWSHIFT_TASK_QUEUE=task_queue)
    with log_file.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "workers.main"], cwd=REPO_ROOT,
                                env=env, stderr=log, start_new_session=True)


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def _basebackups(home: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "pg_basebackup" in cmdline and str(home) in cmdline:
            found.append(process)
    return found


async def test_sigkill_mid_update_converges(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, workers: list[subprocess.Popen[bytes]],
) -> None:
    """The worker dies while its ``pulumi up`` holds the stack's lock (the copy, started
    early, may be running or done); a new worker's retry clears the stale Pulumi lock (its
    holder is provably dead), finishes or redoes the copy and reaches sync. A copy whose
    caller died mid-way is covered in tests/infra/local/test_seed.py."""
    with local_service.primary.endpoint.connect() as conn:
        conn.execute("CREATE TABLE filler AS SELECT g, repeat('x', 400) AS pad "
                     "FROM generate_series(1, 250000) g")
    address = temporal_env.client.service_client.config.target_host
    activity_queue = f"{task_queue}-activities"
    request = local_service.request
    shadow_home = settings.state_dir / "instances" / request.instance_id / "shadow"
    partial = shadow_home / "data.partial"
    backend = Path(pulumi_config(settings).backend_url.removeprefix("file://"))
    locks = backend / ".pulumi" / "locks" / "organization" / "shadowshift"
    locks = locks / f"shadow-{request.instance_id}"

    workers.append(_start_worker(settings, address, activity_queue, settings.state_dir / "w1.log"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with new_worker(temporal_env.client, settings, pool, task_queue=task_queue,
                              extra_workflows=[ProvisionAndSync], with_activities=False):
            handle = await temporal_env.client.start_workflow(
                ProvisionAndSync.run, ProvisionInput(request, activity_queue),
                id=f"crash-{uuid.uuid4()}", task_queue=task_queue,
            )
            deadline = time.monotonic() + 120
            # Killed once the provider host runs: the CLI, the host and the copy all die.
            while True:
                pulumi = pulumi_processes(workers[0].pid)
                if runs_provider_host(pulumi) and list(locks.glob("*.json")):
                    break
                assert time.monotonic() < deadline, "pulumi up never reached its provider host"
                await asyncio.sleep(0.02)
            os.killpg(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            await asyncio.sleep(1)
            # They run in a session of their own (pulumi-yielding), yet die with the worker.
            assert not [pulumi[process] for process in survivors(pulumi, timeout_s=0)]
            leftovers = _basebackups(shadow_home)
            for process in leftovers:  # an orphaned copy would be a separate bug
                process.kill()
            assert not leftovers, "pg_basebackup outlived the killed worker"

            second_log = settings.state_dir / "w2.log"
            workers.append(_start_worker(settings, address, activity_queue, second_log))
            status = await asyncio.wait_for(handle.result(), timeout=240)

    assert status.state == "streaming"
    assert not partial.exists()
    assert PgServer(home=shadow_home, port=request.spec.shadow_port).running()
    filler_rows = query_one(
        local_service.shadow, "SELECT count(*) FROM filler"
    )
    assert filler_rows == 250000
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) >= 2, "the provision was expected to be retried after the kill"
    # The killed Pulumi CLI left its lock; the new worker proved the holder dead and cleared it.
    assert "which is gone. Clearing the stale lock." in second_log.read_text()
