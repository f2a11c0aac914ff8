"""The conformance suite's pair on the hosts platform: a primary and its shadow on two
namespace hosts, each made by its host's agent.

The suite's tests are plain functions; the agents are reached through Temporal. A
:class:`TaskRunner` therefore runs a client and a worker of :class:`HostTaskWorkflow` on an
event loop of its own, in a thread, so a test (or fixture) can run an agent task and wait for
its result. One lab of two hosts serves a whole module; each test gets a fresh instance on it
(its own ports, router service and Pulumi stack), destroyed through the agents afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import shutil
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from contracts.agent_tasks import AgentTask, EnsurePrimaryRequest, ServerRef
from contracts.version import VERSION
from contracts.wire import DATA_CONVERTER
from infra.pulumi_engine import StackDriver
from workers.hosts_lab import PG_PORT, HostsLab
from workers.registry import pulumi_config
from workers.settings import REPO_ROOT, load_settings
from workflows.host_task import HostTaskWorkflow, host_task_workflow_id

T = TypeVar("T")
TASK_TIMEOUT_S = 180.0
"""Longest wait for one agent task (a copy of a fresh server takes seconds)."""


class TaskRunner:
    """A client and a ``HostTaskWorkflow`` worker on a loop of their own (see the module)."""

    def __init__(self, address: str) -> None:
        self.task_queue = f"conformance-{uuid.uuid4().hex[:8]}"
        self._address = address
        self._loop = asyncio.new_event_loop()
        self._ready = concurrent.futures.Future[Client]()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._serve(),), name="conformance-worker",
                                        daemon=True)

    def start(self) -> TaskRunner:
        """Start the worker; returns once it polls (or raises what stopped it)."""
        self._thread.start()
        self._ready.result(timeout=60)
        return self

    @property
    def client(self) -> Client:
        """The runner's client (use it only through :meth:`call`)."""
        return self._ready.result()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = TASK_TIMEOUT_S) -> T:
        """Run ``coroutine`` on the runner's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def run(self, task: AgentTask) -> Any:
        """Run one agent task through its host's queue; its result."""
        return self.call(self.client.execute_workflow(
            HostTaskWorkflow.run, task, id=host_task_workflow_id(task),
            task_queue=self.task_queue))

    def run_all(self, tasks: list[AgentTask]) -> None:
        """Run agent tasks in order."""
        for task in tasks:
            self.run(task)

    def close(self) -> None:
        """Stop the worker and the loop."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)

    async def _serve(self) -> None:
        try:
            client = await Client.connect(self._address, data_converter=DATA_CONVERTER)
            self._stop = asyncio.Event()
            runner = SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules("contracts"))
            async with Worker(client, task_queue=self.task_queue,
                              workflows=[HostTaskWorkflow], workflow_runner=runner):
                self._ready.set_result(client)
                await self._stop.wait()
        except BaseException as err:
            if not self._ready.done():
                self._ready.set_exception(err)
            raise


class HostsWorld:
    """Two agent hosts and a task runner for a module's tests."""

    def __init__(self, lab: HostsLab, runner: TaskRunner) -> None:
        self.lab = lab
        self.runner = runner
        self._ports = itertools.count(PG_PORT + 1)

    @property
    def hosts(self) -> tuple[str, str]:
        """(the primaries' host, the shadows' host)."""
        first, second = self.lab.hosts
        return first, second

    def next_port(self) -> int:
        """A port no earlier test's server used on the hosts."""
        return next(self._ports)

    def ensure_primary(self, instance_id: str, port: int) -> None:
        """A fresh primary on the first host, made by its agent."""
        self.runner.run(AgentTask(self.hosts[0], ensure_primary=EnsurePrimaryRequest(
            VERSION, ServerRef(instance_id, instance_id, port), {})))


@contextlib.contextmanager
def hosts_world(temporal_address: str) -> Iterator[HostsWorld]:
    """Two hosts with their agents on the dev server at ``temporal_address``; all gone after."""
    root = Path(tempfile.mkdtemp(prefix="ssp", dir="/tmp"))  # short: socket paths
    root.chmod(0o755)
    settings = load_settings({
        "SHADOWSHIFT_STATE_DIR": str(root / "state"),
        "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE": str(REPO_ROOT / ".state" / "pulumi-passphrase")})
    tag = uuid.uuid4().hex[:4]
    host, port = temporal_address.rsplit(":", 1)
    lab = HostsLab.create(StackDriver(pulumi_config(settings)), root, (f"p{tag}a", f"p{tag}b"),
                          (host, int(port)), disk_mib=256)
    runner: TaskRunner | None = None
    try:
        for name in lab.hosts:
            lab.start_agent(name)
        runner = TaskRunner(temporal_address).start()
        runner.call(lab.wait_for_agents(runner.client))
        yield HostsWorld(lab, runner)
    finally:
        if runner is not None:
            runner.close()
        lab.close()
        shutil.rmtree(root, ignore_errors=True)
