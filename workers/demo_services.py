"""What the demo starts and stops: the Temporal dev server, a worker, a primary behind HAProxy.

Each piece is an async context manager that stops what it started on the way out, whether the
demo finished, failed or was interrupted (Ctrl-C). The worker runs in a process group of its
own so its children (Pulumi) go with it; PostgreSQL servers the worker started (the shadow)
are stopped by :func:`local_service` from their known homes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts import search_attributes
from infra.errors import InfraError
from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.ports import free_port, free_ports, port_free
from infra.local.postgres import PgEndpoint, PgServer
from workers.settings import REPO_ROOT


def say(message: str) -> None:
    """One line of progress for the person watching."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    return preferred if port_free(preferred) else free_port()


@dataclass(frozen=True)
class DevServer:
    """A running dev server."""

    client: Client
    """Client on the ``default`` namespace."""
    ui_url: str
    """Base URL of the Web UI."""
    metrics_url: str
    """The server's Prometheus endpoint (its ``action`` counter is what Cloud bills)."""

    @property
    def address(self) -> str:
        """host:port of the frontend."""
        return self.client.service_client.config.target_host


@asynccontextmanager
async def dev_server() -> AsyncIterator[DevServer]:
    """A Temporal dev server with the Web UI and our search attributes registered."""
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    port, ui_port, metrics_port = _port(7233), _port(8233), free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal,
        port=port,
        ui=True,
        ui_port=ui_port,
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=["--metrics-port", str(metrics_port)],
    )
    try:
        yield DevServer(env.client, f"http://localhost:{ui_port}",
                        f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        say("Stopping the Temporal dev server.")
        await env.shutdown()


@asynccontextmanager
async def worker_process(
    address: str, state_dir: Path, task_queue: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``python -m workers.demo_worker`` (the worker, reading the demo's metric overlays)
    against ``address``, in its own process group."""
    passphrase = REPO_ROOT / ".state" / "pulumi-passphrase"
    if not passphrase.exists():
        raise RuntimeError(f"{passphrase} is missing: run `make setup`")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
    env.update(
        SHADOWSHIFT_TEMPORAL_ADDRESS=address,
        SHADOWSHIFT_TASK_QUEUE=task_queue,
        SHADOWSHIFT_STATE_DIR=str(state_dir),
        SHADOWSHIFT_PULUMI_PASSPHRASE_FILE=str(passphrase),
        SHADOWSHIFT_LOG_LEVEL="WARNING",
        SHADOWSHIFT_WATCH_INTERVAL_S="0",  # the demo starts its watcher with its own pace
    )
    log = (state_dir / "worker.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.demo_worker"], cwd=REPO_ROOT, env=env,
        start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        say("Stopping the worker.")
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # any child left in the group
        log.close()


@dataclass(frozen=True)
class LocalService:
    """The protected service: a primary PostgreSQL behind its HAProxy frontend."""

    instance_id: str
    primary: PgServer
    haproxy: HAProxyManager
    shadow_port: int
    router_port: int

    @property
    def router(self) -> PgEndpoint:
        """Where clients connect."""
        return PgEndpoint(port=self.router_port)

    def serving_node(self) -> str | None:
        """The one server the router sends traffic to (``None``: none or several)."""
        try:
            live = [n for n, w in self.haproxy.weights(self.instance_id).items() if w > 0]
        except InfraError:
            return None
        return live[0] if len(live) == 1 else None


def instance_homes(state_dir: Path, instance_id: str) -> list[Path]:
    """Where the instance's servers live: the original primary and the shadow."""
    base = state_dir / "instances" / instance_id
    return [base / "original", base / "shadow"]


@contextmanager
def local_service(state_dir: Path) -> Iterator[LocalService]:
    """Start a fresh primary (tier-ready: replicas, archiving) behind its own HAProxy."""
    instance_id = f"demo-{uuid.uuid4().hex[:6]}"
    primary_port, shadow_port, router_port = free_ports(3)
    original, shadow_home = instance_homes(state_dir, instance_id)
    primary = PgServer(home=original, port=primary_port)
    haproxy = HAProxyManager(state_dir / "haproxy")
    try:
        # wal_log_hints: pg_rewind needs it, or the former primary is retired, not rejoined.
        primary.init(settings={"archive_mode": "on", "max_wal_senders": "10",
                               "wal_log_hints": "on"})
        primary.start()
        haproxy.ensure_service(
            instance_id, router_port, [ServerEntry(instance_id, "127.0.0.1", primary_port)]
        )
        yield LocalService(instance_id, primary, haproxy, shadow_port, router_port)
    finally:
        say("Stopping PostgreSQL and HAProxy.")
        for home, port in ((shadow_home, shadow_port), (original, primary_port)):
            with suppress(Exception):
                PgServer(home=home, port=port).stop(mode="immediate")
        with suppress(Exception):
            haproxy.stop()


MARKER = ".shadowshift-demo"


def fresh_state_dir(state_dir: Path, *, owned: bool = False) -> Path:
    """Empty ``state_dir`` after stopping any server a previous, killed run left there.

    Raises:
        RuntimeError: the folder holds files and was not made by the demo (no marker file,
            and not ``owned`` like the default ``.state/demo``), so it is left alone.
    """
    made_by_demo = owned or (state_dir / MARKER).exists()
    if state_dir.is_dir() and any(state_dir.iterdir()) and not made_by_demo:
        raise RuntimeError(f"{state_dir} is not empty and was not made by the demo; "
                           "choose another --state-dir")
    instances = state_dir / "instances"
    if instances.is_dir():
        for home in (*instances.glob("*/original"), *instances.glob("*/shadow")):
            pid_file = home / "data" / "postmaster.pid"
            with suppress(Exception):
                server = psutil.Process(int(pid_file.read_text().split()[0]))
                # Only a postmaster of this very data directory: a stale pid may be reused.
                if str(home / "data") in " ".join(server.cmdline()):
                    server.kill()
    with suppress(Exception):
        HAProxyManager(state_dir / "haproxy").stop()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True, mode=0o755)
    (state_dir / MARKER).touch()
    return state_dir
