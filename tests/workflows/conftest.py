"""Fixtures of the protections on the hosts platform: a lab of two agent hosts and a control
worker for the test's task queue."""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts.spec import ProtectionSpec
from infra.local.haproxy import HAProxyManager
from infra.local.postgres import PgEndpoint
from infra.pulumi_engine import StackDriver
from workers.hosts_lab import HostsLab
from workers.registry import new_worker, pulumi_config
from workers.settings import Settings


@pytest.fixture
def lab(settings: Settings, temporal_env: WorkflowEnvironment) -> Iterator[HostsLab]:
    """Two hosts with their agents (TLS files and the replication role's passfile from the
    lab's set-up), reaching the session's Temporal; the names are new for each test (an agent
    refuses a host name whose queue another agent polled within the last 90 s, and a killed
    agent's poll is listed that long)."""
    host, port = temporal_env.client.service_client.config.target_host.rsplit(":", 1)
    base = Path(tempfile.mkdtemp(prefix="ssf", dir="/tmp"))  # short: socket paths
    tag = uuid.uuid4().hex[:4]
    base.chmod(0o755)
    made = HostsLab.create(StackDriver(pulumi_config(settings)), base,
                           (f"w{tag}a", f"w{tag}b"), (host, int(port)), disk_mib=256)
    try:
        for name in made.hosts:
            made.start_agent(name)
        yield made
    finally:
        # The router outlives a terminated protection by design (it is the service's address);
        # the test owns it, so it stops it.
        HAProxyManager(settings.state_dir / "haproxy").stop()
        made.close()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.asynccontextmanager
async def control_worker(client: Client, settings: Settings,
                         task_queue: str) -> AsyncIterator[None]:
    """A control worker (every workflow and activity) polling ``task_queue``."""
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            yield


async def primary_ready(lab: HostsLab, client: Client, task_queue: str,
                        spec: ProtectionSpec) -> None:
    """The lab's agents answer and the agent of ``spec``'s primary host made its primary."""
    assert spec.hosts is not None
    await lab.wait_for_agents(client)
    await lab.ensure_primary(client, task_queue, spec.hosts.primary.host, spec.instance_id)


def failure_messages(error: BaseException) -> str:
    """A workflow's failure and its causes, as one line."""
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(str(current))
        current = getattr(current, "cause", None) or current.__cause__
    return " | ".join(parts)


def walsenders(primary: PgEndpoint) -> list[tuple[str, bool, str]]:
    """``(application_name, ssl, role)`` of each standby streaming from ``primary`` (its
    walsender's row in ``pg_stat_ssl``): what encrypts the stream and who logged in."""
    with primary.connect() as conn:
        rows = conn.execute(
            "SELECT r.application_name, s.ssl, r.usename FROM pg_stat_replication r"
            " JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming' ORDER BY 1").fetchall()
    return [(str(name), bool(ssl), str(role)) for name, ssl, role in rows]
