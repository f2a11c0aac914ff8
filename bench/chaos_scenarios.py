"""The fault-injection scenarios: each breaks one thing of a protected instance on namespace
hosts (``bench/chaos_rig.py``) under 150 writes/s through the router and a split-brain
monitor, then waits for the protection to converge.

A scenario's verdict comes from what the rig observed, never from what the scenario expected:
``converged`` (protected again, with the number of failovers the fault calls for),
``degraded`` (the protection says why it has no shadow), ``failed`` (neither within the time
limit, a failover the fault did not justify, a lost acknowledged write, two writable
primaries, or a fenced server that took a write). Pauses inside a scenario are the fault's own
duration (a host frozen for 20 s), never a stand-in for a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
import psycopg
from temporalio.client import WorkflowHandle

from bench.chaos_rig import FAST_DETECTION, Rig, elapsed_since, protected_rig
from contracts.cutover import CutoverResult, cutover_workflow_id
from contracts.protection import CutoverRequest, ProtectionStatus
from infra.hosts.host import Host
from infra.local.probe import postmaster_answers
from workers.hosts_lab import PG_PORT
from workers.workload import TABLE, Writer, missing_acked
from workflows.protection import InstanceProtectionWorkflow

WRITE_RATE = 150.0
"""Transactions per second through the router, as the issue's goals are stated."""
CONVERGE_S = 180.0
"""Longest wait for a protection to be protected (or degraded) again after a fault."""
PARTITION_S = 10.0
"""How long a partition that must not cause a failover lasts: ten times the detector's
one second, so a detector that would act on one vantage point has every chance to."""
FREEZE_S = 20.0
"""How long a host stays frozen (the issue's "GC pause / hung host" case)."""
LOST_FOR_GOOD_S = 20.0
"""``policy.reshadow_after_s`` of the scenario whose shadow host never returns (minutes by
default: the suite does not wait that long for a loss it knows is final)."""
RIGS: dict[str, dict[str, Any]] = {
    "shadow_host_lost_for_good": {
        "hosts": 3, "policy": dataclasses.replace(FAST_DETECTION,
                                                  reshadow_after_s=LOST_FOR_GOOD_S)},
    "shadow_host_lost_without_spare": {
        "policy": dataclasses.replace(FAST_DETECTION, reshadow_after_s=LOST_FOR_GOOD_S)},
}
"""Scenarios whose rig differs: a spare host to re-shadow on, and the policy that uses it."""
BALLAST_MB = 400
"""Data on the primary of a scenario during provisioning, so its copy lasts seconds."""


@dataclass
class ScenarioResult:
    """What one scenario measured (``bench/results/chaos.json``'s ``scenarios``)."""

    name: str
    outcome: str
    lost_acked_writes: int
    split_brain_observations: int
    failed_client_ops: int
    recovery_s: float | None
    failovers: int
    first_write_after_fault_s: float | None = None
    """Host failures: from the fault to the first write acknowledged after it (on the
    shadow)."""
    fenced_writes: int = 0
    """Writes a fenced former primary accepted on its own port after it came back."""
    longest_write_stall_s: float | None = None
    """The longest gap between two acknowledged writes from the fault on (tier 1 commits
    wait for a lost synchronous shadow until the watcher relaxes the mode)."""
    cutover_step_ms: dict[str, float] = field(default_factory=dict)
    """The last cutover's steps (from its workflow's result), when there was one."""
    detail: str = ""
    log_tail: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The result as the JSON report stores it."""
        return asdict(self)


@dataclass
class Fault:
    """What a scenario's fault did, for the common verdict."""

    started: float
    """``time.monotonic()`` when it was injected."""
    failovers: int
    """How many failovers it justifies (0 or 1; -1: either, what happens is the finding)."""
    notes: list[str] = field(default_factory=list)
    first_write_s: float | None = None
    fenced_writes: int = 0
    in_force: float = 0.0
    """When the fault was complete (every process dead or frozen, the rule in place): an
    acknowledgement after that cannot come from the faulty primary."""


FaultFn = Callable[[Rig, Writer], Awaitable[Fault]]


async def run_scenario(client: Any, name: str, fault: FaultFn, *,
                       rate: float = WRITE_RATE,
                       restart_temporal: Callable[[], Awaitable[None]] | None = None,
                       ) -> ScenarioResult:
    """A fresh rig, the writer and the monitor started, ``fault`` injected, the verdict.
    ``restart_temporal`` restarts the server ``client`` talks to (the suite's is persistent:
    ``bench/chaos_server.py``)."""
    during = name in DURING_PROVISIONING
    async with protected_rig(client, disk_mib=1024 if during else 256,
                             provisioning=BALLAST_MB if during else 0,
                             **RIGS.get(name, {})) as rig:
        rig.restart_temporal = restart_temporal
        with rig.monitor() as monitor:
            # While it provisions there is no router yet: the writes go to the primary.
            writer = Writer(rig.endpoint(rig.primary_host) if during else rig.router,
                            rate=rate)
            with writer:
                await acks_after(writer, None, 20, 30)
                done = await fault(rig, writer)
                status, converged_s = await _converge(rig, done)
                if status is not None:  # the load flows again before the count is taken
                    with contextlib.suppress(TimeoutError):
                        await acks_after(writer, time.monotonic(), 20, 30)
            report = monitor.stop()
        last = status
        if last is None:  # not converged: where the data should be is where traffic went
            with contextlib.suppress(Exception):
                last = await rig.status()
        result = await asyncio.to_thread(_verdict, rig, name, writer, done, status,
                                         converged_s, report.split_brain_observations, last)
        if status is not None and status.cutovers:
            result.cutover_step_ms = await _cutover_steps(rig)
        return result


async def _cutover_steps(rig: Rig) -> dict[str, float]:
    """Step durations of the instance's last cutover (its workflow's result)."""
    handle: WorkflowHandle[Any, CutoverResult] = rig.client.get_workflow_handle(
        cutover_workflow_id(rig.spec.instance_id), result_type=CutoverResult)
    try:
        result = await handle.result()
    except Exception:  # a report detail: its absence must not fail the scenario
        return {}
    return {**result.step_ms, "critical_path": result.critical_path_ms}


async def _converge(rig: Rig, fault: Fault) -> tuple[ProtectionStatus | None, float | None]:
    """The status that ends the scenario (protected with the recoveries the failovers call
    for, or degraded), with its time since the fault; ``(None, None)`` on time-out."""
    def settled(status: ProtectionStatus) -> bool:
        if status.phase == "degraded":
            return True
        return (status.phase == "protected" and status.shadow_healthy
                and not status.sync_degraded
                and len(status.recoveries) == status.cutovers >= max(fault.failovers, 0))
    try:
        status = await rig.until(settled, CONVERGE_S)
    except TimeoutError:
        return None, None
    return status, elapsed_since(fault.started)


def _verdict(rig: Rig, name: str, writer: Writer, fault: Fault,
             status: ProtectionStatus | None, converged_s: float | None,
             split_brain: int, last: ProtectionStatus | None) -> ScenarioResult:
    problems: list[str] = []
    if status is None:
        outcome = "failed"
        problems.append(f"not converged within {CONVERGE_S:.0f} s")
        lost = _lost(rig, writer, last)
    else:
        outcome = "degraded" if status.phase == "degraded" else "converged"
        if fault.failovers >= 0 and status.cutovers != fault.failovers:
            problems.append(f"{status.cutovers} failovers where the fault justifies "
                            f"{fault.failovers}")
        lost = _lost(rig, writer, status)
    if lost:
        problems.append(f"{lost} acknowledged writes lost")
    if split_brain:
        problems.append(f"{split_brain} split-brain observations")
    if fault.fenced_writes:
        problems.append(f"the fenced former primary took {fault.fenced_writes} writes")
    if problems:
        outcome = "failed"
    return ScenarioResult(
        name=name, outcome=outcome, lost_acked_writes=lost,
        split_brain_observations=split_brain, failed_client_ops=writer.stats.failed_ops,
        recovery_s=converged_s, failovers=status.cutovers if status else -1,
        first_write_after_fault_s=fault.first_write_s, fenced_writes=fault.fenced_writes,
        longest_write_stall_s=_longest_gap(writer, fault.started),
        detail="; ".join([*fault.notes, *problems]),
        log_tail=(last.log[-6:] if last else []))


def _longest_gap(writer: Writer, since: float) -> float | None:
    """Longest time between two acknowledgements after ``since`` (the last before it
    included), in seconds."""
    times = sorted(writer.stats.ack_times)
    after = [t for t in times if t > since]
    before = [t for t in times if t <= since][-1:]
    points = before + after
    gaps = [b - a for a, b in itertools.pairwise(points)]
    return round(max(gaps), 2) if gaps else None


def _lost(rig: Rig, writer: Writer, status: ProtectionStatus | None) -> int:
    """Acknowledged writes missing on the serving primary (on the shadow's host when the
    status cannot be read: the only place a failover could have put them)."""
    host = rig.primary_host
    if status is None or status.primary_node != rig.spec.instance_id:
        host = rig.shadow_host
    try:
        return len(missing_acked(rig.endpoint(host), writer.stats.acked_ids))
    except psycopg.Error:
        return len(writer.stats.acked_ids)  # the data cannot be shown to be there


async def acks_after(writer: Writer, since: float | None, count: int,
                     timeout_s: float) -> None:
    """Until ``writer`` has ``count`` acknowledgements later than ``since`` (any with None);
    ``TimeoutError`` after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while sum(1 for t in writer.stats.ack_times if since is None or t > since) < count:
            await asyncio.sleep(0.02)


async def _first_write_after(writer: Writer, since: float, timeout_s: float = 60) -> float:
    await acks_after(writer, since, 1, timeout_s)
    return min(t for t in writer.stats.ack_times if t > since)


async def _failed_over(rig: Rig, fault: Fault, writer: Writer) -> None:
    """Wait for the failover the fault should cause and time, from the start of the fault,
    the first write acknowledged once the fault was in force (by the shadow, then)."""
    fault.in_force = time.monotonic()
    try:
        await rig.until(lambda s: s.cutovers >= 1, 60)
        first = await _first_write_after(writer, fault.in_force)
        fault.first_write_s = round(first - fault.started, 3)
    except TimeoutError:
        fault.notes.append("no failover within 60 s")


def _direct_writes(rig: Rig, host: str, attempts: int = 10) -> int:
    """Writes the server on ``host`` accepts on its own port (from this machine, as a client
    that bypasses the router would); a fenced server must accept none."""
    accepted = 0
    for attempt in range(attempts):
        try:
            with psycopg.connect(rig.endpoint(host).conninfo(connect_timeout=1),
                                 autocommit=True) as conn:
                conn.execute("SET statement_timeout = '1s'")
                conn.execute(f"INSERT INTO {TABLE} (id, payload) VALUES (%s, 'fenced?')",
                             (-1 - attempt,))
                accepted += 1
        except psycopg.Error:
            pass
        time.sleep(0.2)  # spread over two seconds: a fence that comes late still counts
    return accepted


# -- the faults ---------------------------------------------------------------------------

async def primary_host_crash(rig: Rig, writer: Writer) -> Fault:
    """Every process of the primary's host SIGKILLed (agent and PostgreSQL); the host comes
    back (its agent restarts, as a rebooted host's unit would) after the failover."""
    host = rig.host(rig.primary_host)
    fault = Fault(time.monotonic(), failovers=1)
    await asyncio.to_thread(host.kill)
    await _failed_over(rig, fault, writer)
    rig.lab.start_agent(rig.primary_host)
    return fault


async def primary_host_frozen(rig: Rig, writer: Writer) -> Fault:
    """Every process of the primary's host frozen for 20 s (cgroup freezer), then thawed:
    it is failed over meanwhile, and once thawed it takes no write, through the router or on
    its own port."""
    host = rig.host(rig.primary_host)
    fault = Fault(time.monotonic(), failovers=1)
    await asyncio.to_thread(host.freeze)
    await _failed_over(rig, fault, writer)
    await asyncio.sleep(max(0.0, FREEZE_S - (time.monotonic() - fault.started)))
    await asyncio.to_thread(host.thaw)
    fault.fenced_writes = await asyncio.to_thread(_direct_writes, rig, rig.primary_host)
    return fault


async def primary_partitioned_from_everything(rig: Rig, writer: Writer) -> Fault:
    """The primary's host cut off from every peer for 20 s (control worker, router, Temporal,
    the shadow's host): failed over; its agent, which can renew its lease from nobody, fences
    it, so after the partition heals it takes no write."""
    host = rig.host(rig.primary_host)
    fault = Fault(time.monotonic(), failovers=1)
    await asyncio.to_thread(host.partition, None)
    await _failed_over(rig, fault, writer)
    await asyncio.sleep(max(0.0, FREEZE_S - (time.monotonic() - fault.started)))
    await asyncio.to_thread(host.heal)
    fault.fenced_writes = await asyncio.to_thread(_direct_writes, rig, rig.primary_host)
    return fault


async def _no_failover_for(rig: Rig, fault: Fault, effective: Callable[[], bool],
                           what: str) -> None:
    """Hold a fault that must not cause a failover for :data:`PARTITION_S`, checking that it
    took effect (else the scenario would pass vacuously)."""
    seen = False
    deadline = fault.started + PARTITION_S
    while time.monotonic() < deadline:
        seen = seen or await asyncio.to_thread(effective)
        await asyncio.sleep(0.25)
    if not seen:
        fault.notes.append(f"the fault never took effect: {what}")


async def primary_partitioned_from_control(rig: Rig, writer: Writer) -> Fault:
    """Only the control worker loses the primary (router, Temporal and the shadow still
    reach it): no failover."""
    host = rig.host(rig.primary_host)
    address = str(host.address)
    fault = Fault(time.monotonic(), failovers=0)
    await asyncio.to_thread(host.partition, [host.control])
    try:
        await _no_failover_for(rig, fault, lambda: not postmaster_answers(address, PG_PORT),
                               "the control worker still reached the primary")
    finally:
        await asyncio.to_thread(host.heal)
    return fault


async def primary_partitioned_from_router(rig: Rig, writer: Writer) -> Fault:
    """Only the router's health check loses the primary: no failover (the router's clients
    fail meanwhile: that is the partition, not the product)."""
    host = rig.host(rig.primary_host)
    fault = Fault(time.monotonic(), failovers=0)

    def router_sees_down() -> bool:
        stats = rig.haproxy.stats(rig.spec.instance_id)
        node = stats.get(rig.spec.instance_id)
        return node is not None and node.status.startswith("DOWN")
    await asyncio.to_thread(host.partition, [host.router])
    try:
        await _no_failover_for(rig, fault, router_sees_down,
                               "the router never saw the primary down")
    finally:
        await asyncio.to_thread(host.heal)
    return fault


async def primary_agent_killed(rig: Rig, writer: Writer) -> Fault:
    """The primary host's agent SIGKILLed (its PostgreSQL keeps serving), restarted after
    :data:`PARTITION_S`: no failover, no fence."""
    fault = Fault(time.monotonic(), failovers=0)
    await asyncio.to_thread(rig.lab.stop_agent, rig.primary_host, sig=9)
    try:
        await _no_failover_for(rig, fault, lambda: rig.primary_host not in rig.lab.agents,
                               "the agent was not stopped")
    finally:
        rig.lab.start_agent(rig.primary_host)
    return fault


async def primary_disk_full(rig: Rig, writer: Writer) -> Fault:
    """The primary's data filesystem filled to ENOSPC under writes: PostgreSQL stays up and
    refuses every write, its agent's sample finds the disk full, and the protection fails
    over to the shadow (its own disk) with nothing lost; the ballast is removed once it did
    (or after :data:`FREEZE_S`), so the former primary can rejoin."""
    host = rig.host(rig.primary_host)
    fault = Fault(time.monotonic(), failovers=1)
    await asyncio.to_thread(host.fill_disk)
    fault.in_force = time.monotonic()
    try:  # no first-write figure: a commit that needs no new block still succeeds there
        await rig.until(lambda s: s.cutovers >= 1, 60)
    except TimeoutError:
        fault.notes.append("no failover within 60 s")
    finally:
        await asyncio.to_thread(host.free_disk)
    return fault


async def slow_primary_disk(rig: Rig, writer: Writer) -> Fault:
    """The primary's disk throttled to 512 KiB/s of writes (blkio) for :data:`FREEZE_S`:
    commits slow down but the primary serves: no failover on failure detection."""
    host = rig.host(rig.primary_host)
    fault = Fault(time.monotonic(), failovers=0)
    await asyncio.to_thread(host.throttle_disk, 512 * 1024)
    try:
        limits = host.cgroups.path("blkio") / "blkio.throttle.write_bps_device"
        await _no_failover_for(rig, fault, lambda: bool(limits.read_text().strip()),
                               "no write limit in the host's blkio cgroup")
        await asyncio.sleep(max(0.0, FREEZE_S - (time.monotonic() - fault.started)))
    finally:
        await asyncio.to_thread(host.unthrottle_disk)
    return fault


async def _shadow_lost(rig: Rig, fault: Fault, what: str) -> None:
    """Wait until tier 1 stopped waiting for the lost shadow (the fault took effect)."""
    try:
        await rig.until(lambda s: s.sync_degraded, 60)
        fault.in_force = time.monotonic()
    except TimeoutError:
        fault.notes.append(f"synchronous replication was never relaxed: {what}")


async def shadow_host_crash(rig: Rig, writer: Writer) -> Fault:
    """Every process of the shadow's host SIGKILLed: commits stop waiting for it (tier 1's
    non-strict mode), no failover; the host comes back after :data:`FREEZE_S` (its agent
    restarts, as a rebooted host's unit would, and starts the standby), and the shadow streams
    and is waited for again."""
    host = rig.host(rig.shadow_host)
    fault = Fault(time.monotonic(), failovers=0)
    await asyncio.to_thread(host.kill)
    await _shadow_lost(rig, fault, "the shadow's host was killed")
    await asyncio.sleep(max(0.0, FREEZE_S - (time.monotonic() - fault.started)))
    rig.lab.start_agent(rig.shadow_host)
    return fault


async def shadow_host_lost_for_good(rig: Rig, writer: Writer) -> Fault:
    """Every process of the shadow's host SIGKILLed, and the host never comes back: commits
    stop waiting for it, then after the policy's ``reshadow_after_s`` the protection makes
    the shadow anew on the spec's spare host (its agent copies the primary while writes go
    on) and is protected again there; no failover."""
    host = rig.host(rig.shadow_host)
    fault = Fault(time.monotonic(), failovers=0)
    await asyncio.to_thread(host.kill)
    await _shadow_lost(rig, fault, "the shadow's host was killed")
    try:
        await rig.until(lambda s: s.phase != "protected", LOST_FOR_GOOD_S + 60)
    except TimeoutError:
        fault.notes.append("the lost shadow was never made anew")
    return fault


async def shadow_host_lost_without_spare(rig: Rig, writer: Writer) -> Fault:
    """The shadow's host killed and no spare to take it: after ``reshadow_after_s`` the
    protection says it is ``degraded`` and why; the host then comes back (its agent restarts
    the standby, as a rebooted host's unit would) and the protection is protected again with
    the same shadow; no failover."""
    host = rig.host(rig.shadow_host)
    fault = Fault(time.monotonic(), failovers=0)
    await asyncio.to_thread(host.kill)
    await _shadow_lost(rig, fault, "the shadow's host was killed")
    try:
        status = await rig.until(lambda s: s.phase == "degraded", LOST_FOR_GOOD_S + 60)
        if not any("No spare host is left" in line for line in status.log):
            fault.notes.append(f"degraded without saying why: {status.log[-1:]}")
    except TimeoutError:
        fault.notes.append("the protection never said it has no shadow")
    rig.lab.start_agent(rig.shadow_host)
    with contextlib.suppress(TimeoutError):  # the verdict says if it never came back
        await rig.until(lambda s: s.phase != "degraded", CONVERGE_S)
    return fault


async def _shadow_fault_for_a_while(rig: Rig, inject: Callable[[Host], object],
                                    undo: Callable[[Host], object], what: str) -> Fault:
    """``inject`` a fault into the shadow's host, check tier 1 stopped waiting for it, hold
    it for :data:`FREEZE_S`, ``undo`` it; no failover is justified."""
    host = rig.host(rig.shadow_host)
    fault = Fault(time.monotonic(), failovers=0)
    await asyncio.to_thread(inject, host)
    try:
        await _shadow_lost(rig, fault, what)
        await asyncio.sleep(max(0.0, FREEZE_S - (time.monotonic() - fault.started)))
    finally:
        await asyncio.to_thread(undo, host)
    return fault


async def shadow_partitioned(rig: Rig, writer: Writer) -> Fault:
    """The shadow's host cut off from every peer for :data:`FREEZE_S` during steady sync:
    commits stop waiting for it, no failover; once healed it streams and is waited for
    again."""
    return await _shadow_fault_for_a_while(rig, lambda host: host.partition(None), Host.heal,
                                           "the shadow was partitioned")


async def shadow_disk_full(rig: Rig, writer: Writer) -> Fault:
    """The shadow's data filesystem filled to ENOSPC for :data:`FREEZE_S` (it cannot write
    the WAL it receives): commits stop waiting for it, no failover; the ballast is removed
    and the protection must get its shadow back."""
    return await _shadow_fault_for_a_while(rig, Host.fill_disk, Host.free_disk,
                                           "the shadow's disk was filled")


async def agent_killed_mid_promote(rig: Rig, writer: Writer) -> Fault:
    """An operator's planned cutover, and the shadow host's agent SIGKILLed as it starts
    (restarted after :data:`PARTITION_S`): the promotion is the control side's (SQL and the
    router), so the cutover completes, nothing is lost, and the former primary rejoins."""
    fault = Fault(time.monotonic(), failovers=1)
    cutover = asyncio.ensure_future(rig.handle.execute_update(
        InstanceProtectionWorkflow.request_cutover, CutoverRequest("chaos: planned move")))
    await asyncio.to_thread(rig.lab.stop_agent, rig.shadow_host, sig=9)
    try:
        await cutover
        await rig.until(lambda s: s.cutovers >= 1, 60)
    except Exception as err:  # the verdict counts what happened; the note says why
        fault.notes.append(f"the cutover did not happen: {err}")
    await asyncio.sleep(max(0.0, PARTITION_S - (time.monotonic() - fault.started)))
    rig.lab.start_agent(rig.shadow_host)
    return fault


async def temporal_restarted_during_cutover(rig: Rig, writer: Writer) -> Fault:
    """An operator's planned cutover, and the Temporal server restarted as it starts (its
    history on disk): the workflows resume where the server left them; the cutover
    completes, nothing is lost, the former primary rejoins."""
    fault = Fault(time.monotonic(), failovers=1)
    if rig.restart_temporal is None:
        fault.notes.append("the server cannot be restarted here (not the suite's own)")
        return fault
    await rig.handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                    CutoverRequest("chaos: planned move"))
    await rig.restart_temporal()
    fault.in_force = time.monotonic()
    try:
        await rig.until(lambda s: s.cutovers >= 1, 120)
    except TimeoutError:
        fault.notes.append("no cutover within 120 s of the restart")
    return fault


async def _copying(rig: Rig, timeout_s: float = 120.0) -> None:
    """Until the shadow's ``pg_basebackup`` runs on its host (the copy of the provisioning).

    Raises:
        TimeoutError: it never started.
    """
    node = f"{rig.spec.instance_id}-shadow"

    def running() -> bool:
        for process in psutil.process_iter(["cmdline"]):
            argv = process.info["cmdline"] or []
            if any(a.endswith("pg_basebackup") for a in argv) and any(node in a for a in argv):
                return True
        return False

    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(running):
            await asyncio.sleep(0.05)


async def agent_killed_mid_seed(rig: Rig, writer: Writer) -> Fault:
    """The shadow host's agent SIGKILLed while it copies the standby, restarted after
    :data:`PARTITION_S`: the copy is started again (an interrupted one is never used), the
    protection gets its shadow, nothing is lost, no failover."""
    await _copying(rig)
    fault = Fault(time.monotonic(), failovers=0)
    await asyncio.to_thread(rig.lab.stop_agent, rig.shadow_host, sig=9)
    fault.in_force = time.monotonic()
    await asyncio.sleep(PARTITION_S)
    rig.lab.start_agent(rig.shadow_host)
    return fault


async def temporal_restarted_during_provisioning(rig: Rig, writer: Writer) -> Fault:
    """The Temporal server restarted (history on disk) while the shadow is copied: the
    workflows and the copy's task resume, the protection gets its shadow, no failover."""
    await _copying(rig)
    fault = Fault(time.monotonic(), failovers=0)
    if rig.restart_temporal is None:
        fault.notes.append("the server cannot be restarted here (not the suite's own)")
        return fault
    await rig.restart_temporal()
    fault.in_force = time.monotonic()
    return fault


async def shadow_partitioned_during_initial_copy(rig: Rig, writer: Writer) -> Fault:
    """The shadow's host cut off from every peer for :data:`PARTITION_S` while it copies:
    the copy fails and is started again once healed; the protection gets its shadow, no
    failover."""
    await _copying(rig)
    fault = Fault(time.monotonic(), failovers=0)
    host = rig.host(rig.shadow_host)
    await asyncio.to_thread(host.partition, None)
    fault.in_force = time.monotonic()
    try:
        await asyncio.sleep(PARTITION_S)
    finally:
        await asyncio.to_thread(host.heal)
    return fault


SCENARIOS: dict[str, FaultFn] = {
    "primary_host_crash": primary_host_crash,
    "primary_host_frozen_20s": primary_host_frozen,
    "primary_partitioned_from_everything": primary_partitioned_from_everything,
    "primary_partitioned_from_control": primary_partitioned_from_control,
    "primary_partitioned_from_router": primary_partitioned_from_router,
    "primary_agent_killed": primary_agent_killed,
    "primary_disk_full": primary_disk_full,
    "slow_primary_disk": slow_primary_disk,
    "shadow_host_crash": shadow_host_crash,
    "shadow_partitioned_during_steady_sync": shadow_partitioned,
    "shadow_disk_full": shadow_disk_full,
    "agent_killed_mid_promote": agent_killed_mid_promote,
    "temporal_restarted_during_cutover": temporal_restarted_during_cutover,
    "agent_killed_mid_seed": agent_killed_mid_seed,
    "temporal_restarted_during_provisioning": temporal_restarted_during_provisioning,
    "shadow_partitioned_during_initial_copy": shadow_partitioned_during_initial_copy,
    "shadow_host_lost_for_good": shadow_host_lost_for_good,
    "shadow_host_lost_without_spare": shadow_host_lost_without_spare,
}
"""Every scenario the suite runs, by the name the report gives it."""
DURING_PROVISIONING = ("agent_killed_mid_seed", "temporal_restarted_during_provisioning",
                       "shadow_partitioned_during_initial_copy")
"""Scenarios whose fault strikes while the shadow is copied (:data:`BALLAST_MB` of data on
the primary, the writes on the primary itself: there is no router yet)."""
NO_FAILOVER = ("primary_partitioned_from_control", "primary_partitioned_from_router",
               "primary_agent_killed", "slow_primary_disk", "shadow_host_crash",
               "shadow_partitioned_during_steady_sync", "shadow_disk_full",
               "shadow_host_lost_for_good", "shadow_host_lost_without_spare",
               *DURING_PROVISIONING)
"""Scenarios in which any failover is a false one."""
NOT_YET: tuple[str, ...] = ()
"""Scenarios the issue lists that this suite does not run yet (the report names them, so a
reader never mistakes their absence for a pass)."""
