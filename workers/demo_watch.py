"""The demo's eyes: waiting for phases through Temporal, recording replication lag.

Progress is read with ``DescribeWorkflowExecution`` (the ``ShadowShiftPhase`` search attribute
and the cutover child's start and close times), which is not a billable action, so watching
the demo does not inflate the steady-state count (the one query, of a started cutover's
trigger, comes after the steady state). Every wait gives up on Ctrl-C and when the
worker process dies.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import threading
import time
from contextlib import suppress
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from contracts import search_attributes
from contracts.cutover import cutover_workflow_id
from contracts.protection import EXTERNAL_EVENT, FAILURE_DETECTION, OPERATOR, PREDICTION
from contracts.spec import protection_workflow_id
from contracts.watch import watcher_id
from workers.demo_services import HostsService, say
from workflows.cutover import CutoverWorkflow
from workflows.protection import InstanceProtectionWorkflow

TASK_QUEUE = "shadowshift-demo"
"""The demo worker's queue (its own, so a demo never joins another worker's watcher)."""
WATCHER = watcher_id(TASK_QUEUE)
POLL_S = 0.25
_WHY = {
    PREDICTION: "The model predicted the failure",
    FAILURE_DETECTION: "The primary was lost (failure detection, not the model)",
    OPERATOR: "An operator asked for a cutover",
    EXTERNAL_EVENT: "A platform event asked for a cutover",
}
"""How the demo announces a cutover, by its trigger."""


class Interrupted(Exception):
    """The operator pressed Ctrl-C (or sent SIGTERM)."""


class Progress:
    """Waits on the protection of one instance."""

    def __init__(self, client: Client, instance_id: str, worker: subprocess.Popen[bytes],
                 stop: asyncio.Event) -> None:
        self.client = client
        self.instance_id = instance_id
        self.worker = worker
        self.stop = stop
        self.workflow_id = protection_workflow_id(instance_id)
        self._last_phase: str | None = None

    async def tick(self) -> None:
        """One polling pause; raises when the demo must end."""
        if self.stop.is_set():
            raise Interrupted
        if self.worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {self.worker.returncode} "
                               "(see .state/demo/worker.log)")
        await asyncio.sleep(POLL_S)

    async def sleep_until(self, moment: float) -> None:
        """Wait for the wall-clock ``moment``."""
        while time.time() < moment:
            await self.tick()

    async def phase(self) -> str | None:
        """The protection's phase as published in its search attributes."""
        description = await self.client.get_workflow_handle(self.workflow_id).describe()
        phase = description.typed_search_attributes.get(search_attributes.PHASE)
        if phase != self._last_phase:
            say(f"Protection phase: {phase}.")
            self._last_phase = phase
        return phase

    async def wait_for_phase(self, phases: set[str], *, deadline: float) -> float:
        """Wall time at which the protection reached one of ``phases``."""
        while await self.phase() not in phases:
            if time.time() > deadline:
                raise RuntimeError(f"the protection did not reach {sorted(phases)} in time; "
                                   "raise --healthy-hours on a slow machine")
            await self.tick()
        return time.time()

    async def wait_for_cutover(self, *, deadline: float) -> tuple[float, float] | None:
        """Start and end (wall time) of the instance's cutover, if one starts by ``deadline``."""
        handle = self.client.get_workflow_handle(cutover_workflow_id(self.instance_id))
        while True:
            await self.phase()
            try:
                description = await handle.describe()
            except RPCError:
                description = None  # not started yet
            if description is not None:
                break
            if time.time() > deadline:
                say("No cutover before the failure: the model did not fire in time.")
                return None
            await self.tick()
        say(f"{_WHY.get(await self._trigger(handle), 'A cutover was requested')}: cutover "
            f"started ({description.id}).")
        while description.close_time is None:
            await self.tick()
            description = await handle.describe()
        start = description.start_time.timestamp()
        end = description.close_time.timestamp()
        say(f"Cutover {description.status.name.lower() if description.status else 'done'} "
            f"in {end - start:.2f} s; {deadline - start:.1f} s before the failure.")
        return start, end

    async def _trigger(self, handle: WorkflowHandle[Any, Any]) -> str:
        """What asked for the running cutover (its progress says)."""
        try:
            return (await handle.query(CutoverWorkflow.progress)).trigger
        except RPCError:
            return ""  # finished already, or not queryable yet: the line says less

    async def wait_for_recovery(self, timeout_s: float) -> tuple[float, str] | None:
        """Wall time at which the protection is protected again with a healthy shadow, and
        how the former primary was recovered (the status's last recovery: ``rejoined`` as
        the shadow, or ``retired`` and replaced by a fresh copy), or ``None`` after
        ``timeout_s``."""
        handle = self.client.get_workflow_handle(self.workflow_id)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if await self.phase() == "protected":
                status = await handle.query(InstanceProtectionWorkflow.status)
                if status.shadow_healthy and status.cutovers >= 1 and status.recoveries:
                    how = status.recoveries[-1]
                    say("The former primary rejoined as the shadow: protected again."
                        if how == "rejoined" else
                        f"The former primary was {how}; a fresh shadow is in sync: protected "
                        "again. Why, in the protection's log: "
                        + next((line for line in reversed(status.log) if "Retiring" in line),
                               "(not logged)"))
                    return time.time(), how
            await self.tick()
        say(f"The former primary was not recovered within {timeout_s:.0f} s "
            f"(phase {self._last_phase}).")
        return None

    async def stop_workflows(self) -> None:
        """Terminate the watcher and the protection so the worker can stop promptly."""
        for workflow_id in (WATCHER, self.workflow_id):
            with suppress(RPCError):
                await self.client.get_workflow_handle(workflow_id).terminate("demo over")


class LagRecorder:
    """Samples the serving node's replication lag (bytes its standby has yet to replay)."""

    def __init__(self, service: HostsService, interval_s: float = 0.5) -> None:
        self.service = service
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-lag", daemon=True)

    def start(self) -> LagRecorder:
        """Start sampling in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            node = self.service.serving_node()
            if node not in self.service.nodes:
                continue
            with suppress(Exception):
                with self.service.endpoint(node).connect(timeout_s=1) as conn:
                    row = conn.execute(
                        "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))"
                        " FROM pg_stat_replication").fetchone()
                if row and row[0] is not None:
                    self.samples.append((time.time(), float(row[0])))


class HeartbeatClock:
    """When the fleet watcher's heartbeats reach the server, read from the server itself.

    ``DescribeWorkflowExecution`` (not a billable action) shows the pending activity's last
    heartbeat time; polling it once a second records every heartbeat that reached the server,
    so the interval between them is measured rather than inferred from a count in a short
    window.
    """

    def __init__(self, client: Client, interval_s: float = 1.0) -> None:
        self.client = client
        self.interval_s = interval_s
        self.times: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> HeartbeatClock:
        """Start polling in the background."""
        self._task = asyncio.ensure_future(self._run())
        return self

    def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()

    def per_hour(self) -> float | None:
        """Heartbeats per hour from the median interval (``None``: fewer than two seen)."""
        gaps = sorted(b - a for a, b in itertools.pairwise(self.times))
        return 3600.0 / gaps[len(gaps) // 2] if gaps else None

    async def _run(self) -> None:
        handle = self.client.get_workflow_handle(WATCHER)
        while True:
            with suppress(RPCError):
                description = await handle.describe()
                for pending in description.raw_description.pending_activities:
                    if pending.HasField("last_heartbeat_time"):
                        moment = pending.last_heartbeat_time.ToDatetime().timestamp()
                        if not self.times or moment > self.times[-1]:
                            self.times.append(moment)
            await asyncio.sleep(self.interval_s)
