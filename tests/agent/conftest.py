"""Fixtures of the node agent's tests: real agent processes (``shadowshift agent``), a worker
that runs :class:`AgentStepWorkflow` on a queue of the test's own, and helpers to call the
agent through Temporal and over HTTP. Nothing is mocked: every agent is the real program, every
server a real PostgreSQL it manages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.agent_catalog import ServerCatalog
from activities.agent_server import AgentConfig
from contracts.agent import (
    AgentCall,
    EnsurePrimaryRequest,
    PrimarySource,
    SeedRequest,
    ServerInfo,
    ServerRef,
    host_task_queue,
)
from contracts.version import VERSION
from infra.local.ports import free_port
from tests.agent.agent_workflow import AgentStep, AgentStepWorkflow
from tests.conftest import polled
from workers.settings import REPO_ROOT

T = TypeVar("T")


def new_host() -> str:
    """A host name of the test's own (the agent's naming rules: ``[a-z][a-z0-9-]{0,30}``)."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class AgentProcess:
    """One running ``shadowshift agent``."""

    host: str
    data_root: Path
    http_port: int
    process: subprocess.Popen[bytes]
    log_file: Path
    address: str = "127.0.0.1"

    @property
    def queue(self) -> str:
        """The host's task queue."""
        return host_task_queue(self.host)

    @property
    def catalog(self) -> ServerCatalog:
        """The servers under its data root, read the way the agent reads them."""
        return ServerCatalog(AgentConfig(host=self.host, data_root=self.data_root))

    def log_text(self) -> str:
        """Everything it logged so far."""
        return self.log_file.read_text(errors="replace")

    def http(self, method: str, path: str, body: dict[str, Any] | None = None,
             timeout_s: float = 5.0) -> tuple[int, dict[str, Any]]:
        """One request to its HTTP endpoint: status and JSON answer."""
        conn = http.client.HTTPConnection(self.address, self.http_port, timeout=timeout_s)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)


def agent_env(address: str) -> dict[str, str]:
    """The environment of an agent on the test's Temporal (no ``SHADOWSHIFT_*`` leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
    env.update(SHADOWSHIFT_TEMPORAL_ADDRESS=address, SHADOWSHIFT_LOG_LEVEL="INFO")
    return env


class Agents:
    """Starts agents for a test and leaves nothing behind: agents stopped, every server they
    managed killed (frozen or stopped ones too), orphan copies killed."""

    def __init__(self, client: Client, address: str, tmp_path: Path) -> None:
        self.client = client
        self.address = address
        self.tmp_path = tmp_path
        self.started: list[AgentProcess] = []

    def launch(self, host: str, *, data_root: Path | None = None,
               http_port: int | None = None, extra: tuple[str, ...] = (),
               argv_prefix: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> AgentProcess:
        """Start ``shadowshift agent --host host`` (through the CLI) without waiting; ``env``
        adds to (or overrides) :func:`agent_env`."""
        data_root = data_root or self.tmp_path / f"root-{host}"
        port = http_port or free_port()
        log_file = self.tmp_path / f"agent-{host}-{len(self.started)}.log"
        argv = [*argv_prefix, sys.executable, "-m", "workers.cli", "agent", "--host", host,
                "--data-root", str(data_root), "--http-port", str(port), *extra]
        with log_file.open("ab") as log:
            process = subprocess.Popen(argv, cwd=REPO_ROOT,
                                       env=agent_env(self.address) | (env or {}),
                                       stdout=log, stderr=log, start_new_session=True)
        agent = AgentProcess(host, data_root, port, process, log_file)
        self.started.append(agent)
        return agent

    async def start(self, host: str | None = None, **kwargs: Any) -> AgentProcess:
        """Start an agent and wait until it polls its queue and its HTTP endpoint answers."""
        launched = time.time()
        agent = self.launch(host or new_host(), **kwargs)
        polling = asyncio.ensure_future(polled(self.client, agent.queue, timeout_s=60,
                                               since=launched))
        while not polling.done():
            if agent.process.poll() is not None:
                polling.cancel()
                pytest.fail(f"the agent exited ({agent.process.returncode}):\n"
                            f"{agent.log_text()}")
            await asyncio.sleep(0.05)
        polling.result()
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if agent.http("GET", "/health")[0] == 200:
                    return agent
            assert agent.process.poll() is None, agent.log_text()
            assert time.monotonic() < deadline, "the agent's HTTP endpoint never answered"
            await asyncio.sleep(0.05)

    def cleanup(self) -> None:
        """Stop every agent, kill every server and copy they left."""
        for agent in self.started:
            if agent.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(agent.process.pid, signal.SIGKILL)
                agent.process.wait(timeout=30)
        for root in {agent.data_root for agent in self.started}:
            kill_servers(root)


def kill_servers(data_root: Path) -> None:
    """SIGKILL every server and ``pg_basebackup`` under ``data_root``."""
    catalog = ServerCatalog(AgentConfig(host="cleanup", data_root=data_root))
    for node in catalog.nodes():
        server = catalog.find(node)
        if server is not None:
            server.kill_tree()
    for process in psutil.process_iter(["cmdline"]):
        if str(data_root) in " ".join(process.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                process.kill()


@contextlib.contextmanager
def agents_under(env: WorkflowEnvironment, base: Path) -> Iterator[Agents]:
    """Agents on ``env``'s dev server with their data roots under ``base``; all stopped, and
    their servers killed, afterwards."""
    base.chmod(0o755)  # the postgres user must reach the data roots
    started = Agents(env.client, env.client.service_client.config.target_host, base)
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture
def agents(temporal_env: WorkflowEnvironment, tmp_path: Path) -> Iterator[Agents]:
    """Agent processes of the test's own, on the shared dev server."""
    with agents_under(temporal_env, tmp_path) as started:
        yield started


@dataclass
class Steps:
    """Runs :class:`AgentStep`s through Temporal on the test's workflow queue."""

    client: Client
    task_queue: str
    durations: list[float] = field(default_factory=list)

    async def run(self, step: AgentStep, result_type: type[T] | None = None) -> T:
        """Run one step and return the activity's result (as ``result_type``)."""
        started = time.monotonic()
        try:
            return await self.client.execute_workflow(  # type: ignore[no-any-return]
                AgentStepWorkflow.run, step, id=f"agent-step-{uuid.uuid4().hex[:12]}",
                task_queue=self.task_queue, result_type=result_type)
        finally:
            self.durations.append(time.monotonic() - started)

    async def ensure(self, host: str, node: str, port: int, *, instance: str = "db",
                     settings: dict[str, str] | None = None) -> ServerInfo:
        """``ensure_primary``."""
        request = EnsurePrimaryRequest(VERSION, ServerRef(instance, node, port), settings or {})
        return await self.run(AgentStep(host, "ensure_primary", ensure=request), ServerInfo)

    async def seed(self, host: str, node: str, port: int, source: PrimarySource, *,
                   instance: str = "db", heartbeat_s: float = 30.0) -> ServerInfo:
        """``seed_standby``."""
        request = SeedRequest(VERSION, ServerRef(instance, node, port), source)
        return await self.run(AgentStep(host, "seed_standby", seed=request,
                                        heartbeat_s=heartbeat_s), ServerInfo)

    async def call(self, host: str, method: str, node: str, port: int, *,
                   result_type: type[T], instance: str = "db", version: str = VERSION,
                   **options: Any) -> T:
        """A method taking an ``AgentCall``."""
        call = AgentCall(version, ServerRef(instance, node, port))
        return await self.run(AgentStep(host, method, call=call, **options), result_type)


@pytest.fixture
async def steps(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Steps]:
    """A worker running :class:`AgentStepWorkflow` on the test's queue."""
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("contracts"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with Worker(temporal_env.client, task_queue=task_queue,
                          workflows=[AgentStepWorkflow], activity_executor=pool,
                          workflow_runner=runner):
            yield Steps(temporal_env.client, task_queue)


async def until(condition: Any, timeout_s: float, what: str, every_s: float = 0.01) -> float:
    """Poll ``condition()`` until true, at most ``timeout_s``, leaving the event loop free
    between polls; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s:.1f} s")
        await asyncio.sleep(every_s)
    return time.monotonic() - started


def tree_mib(root: Path) -> float:
    """Size of the files under ``root`` in MiB (0 when it is gone; files may vanish while
    it is being written)."""
    total = 0
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total / 2**20
