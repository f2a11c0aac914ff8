"""One protected instance on two namespace hosts, under writes and a split-brain monitor, for
the fault-injection suite (``bench/chaos.py``) and its subset in ``make test``.

A rig is everything a scenario needs and nothing it shares with another: its own fleet of
hosts (fresh names, so no agent's queue is still listed from an earlier run), agents, gateway,
control worker on its own task queue, fleet watcher, router (HAProxy on this machine) and a
tier-1 protection in phase ``protected``. The writer and the monitor start with the scenario,
so what they count belongs to it alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from contracts.policy import Policy
from contracts.protection import ProtectionStatus
from contracts.spec import ProtectionSpec
from contracts.watch import WatchFleetInput
from infra.hosts.host import Host
from infra.local.haproxy import HAProxyManager
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint
from infra.pulumi_engine import StackDriver
from workers.hosts_lab import PG_PORT, HostsLab
from workers.protect import ensure_fleet_watcher, start_protection
from workers.registry import new_worker, pulumi_config
from workers.settings import Settings, load_settings
from workers.split_brain import SplitBrainMonitor
from workers.workload import prepare_table
from workflows.protection import InstanceProtectionWorkflow

FAST_DETECTION = Policy(failover_after_s=1, threshold=100, consecutive_readings=100)
"""Failure detection only (no prediction can fire), one second of agreed evidence: what an
operator who wants the shortest outage sets, and the suite's detector."""
WATCH = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=3600)


@dataclass
class Rig:
    """A protected instance on hosts ``primary_host`` and ``shadow_host``."""

    lab: HostsLab
    client: Client
    settings: Settings
    task_queue: str
    spec: ProtectionSpec
    handle: WorkflowHandle[Any, Any]
    primary_host: str
    shadow_host: str
    restart_temporal: Callable[[], Awaitable[None]] | None = None
    """Restart the Temporal server everything here talks to (``None``: not restartable)."""

    @property
    def router(self) -> PgEndpoint:
        """The instance's address for clients."""
        return PgEndpoint(port=self.spec.router_port)

    @property
    def haproxy(self) -> HAProxyManager:
        """The router."""
        return HAProxyManager(self.settings.state_dir / "haproxy")

    def host(self, name: str) -> Host:
        """Runtime handle of host ``name``."""
        return self.lab.hosts[name]

    def endpoint(self, host: str) -> PgEndpoint:
        """The server on ``host``, reached directly (not through the router)."""
        return PgEndpoint(host=str(self.lab.hosts[host].address), port=PG_PORT)

    def monitor(self) -> SplitBrainMonitor:
        """A split-brain monitor of both servers and the router (start it with ``with``)."""
        nodes = {self.spec.instance_id: self.primary_host,
                 f"{self.spec.instance_id}-shadow": self.shadow_host}
        return SplitBrainMonitor({node: self.endpoint(host) for node, host in nodes.items()},
                                 self.haproxy, self.spec.instance_id)

    async def status(self) -> ProtectionStatus:
        """The protection's status now."""
        status: ProtectionStatus = await self.handle.query(InstanceProtectionWorkflow.status)
        return status

    async def until(self, done: Callable[[ProtectionStatus], bool],
                    timeout_s: float) -> ProtectionStatus:
        """The first status that satisfies ``done``; ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                status = await self.status()
                if done(status):
                    return status
                await asyncio.sleep(0.2)


def rig_settings(root: Path) -> Settings:
    """Settings of a control worker whose state (Pulumi, router) lives under ``root``."""
    state_dir = root / "state"
    state_dir.mkdir(mode=0o755, parents=True)
    (state_dir / "pulumi-passphrase").write_text("chaos-passphrase\n")
    return load_settings({"SHADOWSHIFT_STATE_DIR": str(state_dir),
                          "SHADOWSHIFT_LOG_LEVEL": "INFO"})


@contextlib.asynccontextmanager
async def protected_rig(client: Client, *, policy: Policy = FAST_DETECTION,
                        hosts: int = 2, disk_mib: int = 256,
                        provisioning: int = 0) -> AsyncIterator[Rig]:
    """A fresh rig (see the module docstring) on the dev server ``client`` talks to; every
    part of it is gone when the block ends, whatever happened inside. Hosts beyond the first
    two are the spec's spares (``hosts.spares``).

    ``provisioning`` > 0: the primary holds that many MB of data (so its copy takes seconds)
    and the rig is handed over as soon as the protection has started, while it provisions
    (no router exists yet; the table is prepared on the primary)."""
    tag = uuid.uuid4().hex[:5]
    names = tuple(f"x{tag}{chr(ord('a') + i)}" for i in range(hosts))
    root = Path(tempfile.mkdtemp(prefix="ssc", dir="/tmp"))  # short: socket paths
    root.chmod(0o755)
    settings = rig_settings(root)
    host, port = client.service_client.config.target_host.rsplit(":", 1)
    lab = await asyncio.to_thread(HostsLab.create, StackDriver(pulumi_config(settings)), root,
                                  names, (host, int(port)), disk_mib=disk_mib)
    task_queue = f"chaos-{tag}"
    settings = lab.worker_settings(settings)  # its SQL to the hosts over verify-full
    try:
        for name in names:
            lab.start_agent(name)
        with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
            async with new_worker(client, settings, pool, task_queue=task_queue):
                yield await _protect(lab, client, settings, task_queue, policy, names, tag,
                                     provisioning)
    finally:
        HAProxyManager(settings.state_dir / "haproxy").stop()
        await asyncio.to_thread(lab.close)
        shutil.rmtree(root, ignore_errors=True)


async def _protect(lab: HostsLab, client: Client, settings: Settings, task_queue: str,
                   policy: Policy, names: tuple[str, ...], tag: str,
                   provisioning: int = 0) -> Rig:
    """Primary on the first host (made by its agent), shadow on the second, protected and
    watched (with ``provisioning`` MB of data, handed over while it provisions)."""
    primary, shadow = names[0], names[1]
    spec = lab.spec(f"db-{tag}", primary, shadow, free_ports(1)[0], tier=1, policy=policy,
                    spares=names[2:])
    await lab.wait_for_agents(client)
    await lab.ensure_primary(client, task_queue, primary, spec.instance_id)
    if provisioning:
        direct = PgEndpoint(host=str(lab.hosts[primary].address), port=PG_PORT)
        await asyncio.to_thread(_ballast, direct, provisioning)
        prepare_table(direct)
    handle = await start_protection(client, spec, task_queue=task_queue)
    rig = Rig(lab, client, settings, task_queue, spec, handle, primary, shadow)
    if provisioning:
        await ensure_fleet_watcher(client, task_queue=task_queue, request=WATCH)
        return rig
    await rig.until(lambda s: s.phase == "protected", 240)
    prepare_table(rig.router)
    await ensure_fleet_watcher(client, task_queue=task_queue, request=WATCH)
    # The watcher has found and sampled the protection once the protection heard a score.
    await rig.until(lambda s: s.readiness_score is not None, 60)
    return rig


def _ballast(endpoint: PgEndpoint, megabytes: int) -> None:
    """About ``megabytes`` MB of rows on the primary, so the shadow's copy lasts seconds."""
    with endpoint.connect() as conn:
        rows = int(megabytes) * 900  # an int: CREATE TABLE AS takes no bound parameters
        conn.execute(f"CREATE TABLE IF NOT EXISTS ballast AS SELECT g AS id, "
                     f"repeat('x', 1000) AS pad FROM generate_series(1, {rows}) AS g")


def elapsed_since(start: float) -> float:
    """Seconds since ``start`` (``time.monotonic()``), rounded for a report."""
    return round(time.monotonic() - start, 2)
