"""Run agent tasks from synchronous code: a Temporal client and a worker of
:class:`HostTaskWorkflow` on an event loop of their own, in a thread.

The conformance suite's tests and the hosts benchmark are plain functions; the agents they
need are reached through Temporal, as the workflow reaches them (``HostTaskWorkflow`` routes
each task to its host's queue). Written here because ``temporalio`` offers only asyncio
clients; :meth:`TaskRunner.call` hands a coroutine to the runner's loop and waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.service import TLSConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from contracts.agent_tasks import AgentTask
from contracts.shadow import PlatformRequest
from contracts.wire import DATA_CONVERTER
from infra.platform import Platform, ShadowInfo
from workflows.host_task import HostTaskWorkflow, host_task_workflow_id

T = TypeVar("T")
TASK_TIMEOUT_S = 600.0
"""Longest wait for one agent task (a copy of a 1 GB primary takes seconds)."""


class TaskRunner:
    """A client and a ``HostTaskWorkflow`` worker on a loop of their own (see the module)."""

    def __init__(self, address: str, *, tls: TLSConfig | bool = False) -> None:
        """``tls``: as ``workers.temporal_tls.tls_config`` builds it; plaintext by default
        (the suite's and the benchmark's own dev servers)."""
        self.task_queue = f"tasks-{uuid.uuid4().hex[:8]}"
        self._address = address
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._ready = concurrent.futures.Future[Client]()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._serve(),), name="agent-task-runner",
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

    def start_task(self, task: AgentTask) -> concurrent.futures.Future[Any]:
        """Start one agent task; its future result."""
        return asyncio.run_coroutine_threadsafe(self.client.execute_workflow(
            HostTaskWorkflow.run, task, id=host_task_workflow_id(task),
            task_queue=self.task_queue), self._loop)

    def provision(self, platform_for: Callable[[PlatformRequest], Platform],
                  request: PlatformRequest) -> ShadowInfo:
        """Provision ``request``'s shadow as the protection workflow does: each agent task
        the platform hands back is run on its host, alongside the next call when the
        platform says so (``copy_alongside``), and the platform is asked again."""
        platform = platform_for(request)
        info = platform.provision_shadow()
        while (task := info.agent_task) is not None:
            if not info.copy_alongside:
                self.run(task)
                info = platform.provision_shadow()
                continue
            copy = self.start_task(task)
            request = dataclasses.replace(request, copy_alongside=True)
            alongside = platform_for(request)
            try:
                info = alongside.provision_shadow()
            finally:
                alongside.close()
            copy.result(TASK_TIMEOUT_S)
        platform.close()
        return info

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
            client = await Client.connect(self._address, data_converter=DATA_CONVERTER,
                                          tls=self._tls)
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
