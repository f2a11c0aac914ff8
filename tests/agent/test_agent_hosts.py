"""Agents inside two namespace hosts (``infra.hosts``): each started in its host through
``Host.popen``, each managing a server on its host's own address, a standby seeded across
the hosts from its primary."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from contracts.agent import AGENT_HTTP_PORT, PrimarySource, host_task_queue
from infra.hosts.fleet import fleet_hosts
from infra.hosts.gateway import TemporalGateway
from infra.hosts.host import Host
from infra.hosts.spec import FleetSpec
from infra.local.ports import free_port
from infra.local.postgres import PgEndpoint, query_one
from tests.agent.agent_workflow import AgentStepWorkflow
from tests.agent.conftest import Steps, agent_env, polled, until
from tests.infra.hosts.conftest import (  # noqa: F401 (fixtures, used by name)
    Fleets,
    fleets,
    hosts_driver,
    machine_can_host,
    pulumi_state_dir,
)
from workers.settings import REPO_ROOT

pytestmark = pytest.mark.integration

PORT = 5432
"""Each host has an address of its own, so both servers take PostgreSQL's usual port."""


@pytest.fixture(scope="module")
def two_hosts(fleets: Fleets) -> Iterator[tuple[FleetSpec, Host, Host]]:  # noqa: F811
    """A fleet of hosts ``pa`` and ``pb`` (disks big enough for a cluster each); every
    process in them is killed at the end, before the fleet goes."""
    spec = fleets.spec("pa", "pb", disk_mib=192)
    fleets.up(spec)
    hosts = fleet_hosts(spec)
    try:
        yield spec, hosts["pa"], hosts["pb"]
    finally:
        for host in hosts.values():
            with contextlib.suppress(Exception):
                host.kill()


@pytest.fixture
def fleet_temporal(two_hosts: tuple[FleetSpec, Host, Host],
                   temporal_env: WorkflowEnvironment, tmp_path: Path) -> Iterator[str]:
    """The test session's dev server, reachable from inside the hosts on the fleet's
    TEMPORAL address through the HAProxy gateway (the dev server's ``--ip`` moves only its
    frontend: its own services then fail to reach each other on 127.0.0.1)."""
    host, port = temporal_env.client.service_client.config.target_host.rsplit(":", 1)
    gateway = TemporalGateway(tmp_path / "gateway", str(two_hosts[1].temporal), free_port(),
                              host, int(port))
    gateway.start()
    try:
        yield gateway.address
    finally:
        gateway.stop()


async def test_agents_in_two_hosts_seed_a_standby_across_them(
        two_hosts: tuple[FleetSpec, Host, Host], fleet_temporal: str,
        temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """An agent started inside each host (its network namespace and cgroups) serves that
    host's queue on the host's address: ensure_primary on pa, seed_standby on pb from pa's
    address; the standby streams from the other host (the primary sees pb's address), replays
    a write, and each agent answers over HTTP on its host's address with host metrics."""
    _, pa, pb = two_hosts
    client = temporal_env.client
    address = fleet_temporal
    started = time.time()
    for host in (pa, pb):
        host.popen([sys.executable, "-m", "workers.cli", "agent", "--host", host.name,
                    "--address", str(host.address), "--data-root", str(host.data_dir / "ag")],
                   env=agent_env(address), cwd=REPO_ROOT,
                   log_path=tmp_path / f"agent-{host.name}.log")
    for host in (pa, pb):
        await polled(client, host_task_queue(host.name), timeout_s=60, since=started)

    task_queue = f"hosts-{uuid.uuid4().hex[:8]}"
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("contracts"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with Worker(client, task_queue=task_queue, workflows=[AgentStepWorkflow],
                          activity_executor=pool, workflow_runner=runner):
            steps = Steps(client, task_queue)
            primary = await steps.ensure(pa.name, "a", PORT)
            started = time.monotonic()
            standby = await steps.seed(pb.name, "b", PORT,
                                       PrimarySource(str(pa.address), PORT, slot="b"))
            seeded = time.monotonic() - started

    assert (primary.address, standby.address) == (str(pa.address), str(pb.address))
    assert standby.standby and standby.seed_seconds is not None
    a = PgEndpoint(host=str(pa.address), port=PORT)
    b = PgEndpoint(host=str(pb.address), port=PORT)
    row = query_one(a, "SELECT host(client_addr) || ' ' || state FROM pg_stat_replication "
                       "WHERE application_name = 'b'")
    assert row == f"{pb.address} streaming"
    with a.connect() as conn:
        conn.execute("CREATE TABLE across (at text)")
        conn.execute("INSERT INTO across VALUES ('pa')")
    await until(lambda: _count(b) == 1, 15, "the write on pb")
    for host, node in ((pa, "a"), (pb, "b")):
        health = _get(f"http://{host.address}:{AGENT_HTTP_PORT}/health")
        assert health["host"] == host.name and health["address"] == str(host.address)
        sample = _get(f"http://{host.address}:{AGENT_HTTP_PORT}/metrics/{node}")
        assert sample["memory_percent"] is not None and sample["cpu_percent"] is not None
    print(f"\nseed across hosts: {standby.seed_seconds:.2f} s copy, {seeded:.2f} s activity "
          "round trip")


def _count(endpoint: PgEndpoint) -> int | None:
    try:
        return query_one(endpoint, "SELECT count(*) FROM across")  # type: ignore[no-any-return]
    except Exception:
        return None


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]
