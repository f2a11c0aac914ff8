"""``make demo``: start a dev server with its Web UI and a worker, run the skeleton end to end.

Everything it starts is stopped when it exits, Ctrl-C included: the dev server is owned by
``WorkflowEnvironment`` and the worker runs in a process group of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from infra.local.ports import free_port, port_free
from workers.process_exit import exit_process
from workers.settings import REPO_ROOT
from workflows.smoke import SmokeInput, SmokeResult, SmokeWorkflow

DEMO_DIR = REPO_ROOT / ".state" / "demo"
TASK_QUEUE = "shadowshift-demo"


def _port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    return preferred if port_free(preferred) else free_port()


def say(message: str) -> None:
    """Progress for the person watching."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


@asynccontextmanager
async def dev_server() -> AsyncIterator[tuple[Client, str]]:
    """A Temporal dev server with the Web UI; yields a client and the UI's base URL."""
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    port, ui_port = _port(7233), _port(8233)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal,
        port=port,
        ui=True,
        ui_port=ui_port,
        dev_server_log_level="error",
    )
    try:
        yield env.client, f"http://localhost:{ui_port}"
    finally:
        say("Stopping the Temporal dev server.")
        await env.shutdown()


@asynccontextmanager
async def worker_process(address: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``python -m workers.main`` against ``address``, in its own process group."""
    passphrase = REPO_ROOT / ".state" / "pulumi-passphrase"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
    env.update(
        SHADOWSHIFT_TEMPORAL_ADDRESS=address,
        SHADOWSHIFT_TASK_QUEUE=TASK_QUEUE,
        SHADOWSHIFT_STATE_DIR=str(DEMO_DIR),
        SHADOWSHIFT_PULUMI_PASSPHRASE_FILE=str(passphrase),
        SHADOWSHIFT_LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.main"], cwd=REPO_ROOT, env=env, start_new_session=True
    )
    try:
        yield process
    finally:
        say("Stopping the worker.")
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class Interrupted(Exception):
    """The operator pressed Ctrl-C (or sent SIGTERM)."""


async def run_demo() -> SmokeResult:
    """Start everything, run the skeleton workflow and print where to look."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with dev_server() as (client, ui_url):
        address = client.service_client.config.target_host
        say(f"Temporal dev server at {address}; Web UI at {ui_url}")
        async with worker_process(address) as worker:
            workflow_id = f"skeleton-{uuid.uuid4().hex[:8]}"
            target = DEMO_DIR / "skeleton" / f"{workflow_id}.txt"
            say(f"Starting workflow {workflow_id}")
            say(f"Watch it: {ui_url}/namespaces/default/workflows/{workflow_id}")
            handle = await client.start_workflow(
                SmokeWorkflow.run,
                SmokeInput(stack_name=workflow_id, path=str(target)),
                id=workflow_id,
                task_queue=TASK_QUEUE,
            )
            result_task = asyncio.ensure_future(handle.result())
            while not result_task.done():
                if stop.is_set():
                    result_task.cancel()
                    raise Interrupted
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with code {worker.returncode}")
                await asyncio.wait({result_task}, timeout=0.5)
            result = result_task.result()
    say(
        f"Pulumi created {result.stack.path} (sha256 {result.stack.sha256[:12]}...), "
        f"LightGBM scored {result.probability:.3f}, destroy removed it: {result.destroyed}"
    )
    return result


def main() -> int:
    """Entry point for ``make demo``."""
    try:
        asyncio.run(run_demo())
    except (KeyboardInterrupt, Interrupted):
        say("Interrupted; everything started by the demo was stopped.")
        return 130
    return 0


if __name__ == "__main__":
    exit_process(main())
