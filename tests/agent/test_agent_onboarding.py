"""Onboarding an existing PostgreSQL: a cluster the agent did not make (plain ``initdb``, with
data, its configuration in its data directory, stopped), placed at the node's folder under the
agent's data root, is adopted by ``ensure_primary`` — asked with the ``temporal`` command
docs/operations.md shows — with its data, gains the agent's settings, and can be copied to a
standby on another host's agent."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from contracts.agent import LocalView, PrimarySource
from contracts.shadow import NodeFacts
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, PgServer, query_one
from tests.agent.conftest import Agents, Steps
from tests.conftest import temporal_binary
from workers.settings import REPO_ROOT
from workflows.host_task import HostTaskWorkflow


def documented_ensure_primary() -> dict[str, Any]:
    """The ``--input`` of the ``HostTaskWorkflow`` command in docs/operations.md."""
    guide = (REPO_ROOT / "docs" / "operations.md").read_text()
    command = guide[guide.index("temporal workflow execute --type HostTaskWorkflow"):]
    match = re.search(r"--input '([^']*)'", command)
    assert match, "the guide's HostTaskWorkflow command has no --input"
    return dict(json.loads(match.group(1)))


@pytest.fixture
async def host_tasks(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[str]:
    """A worker running ``HostTaskWorkflow`` on a queue of its own (as the control worker does
    on ``shadowshift``); yields the queue."""
    queue = f"{task_queue}-host-tasks"
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("contracts"))
    async with Worker(temporal_env.client, task_queue=queue,
                      workflows=[HostTaskWorkflow], workflow_runner=runner):
        yield queue


async def run_documented_command(temporal_env: WorkflowEnvironment, queue: str, host: str,
                                 port: int) -> None:
    """The guide's ``temporal workflow execute`` with this test's host, port and queue."""
    task = documented_ensure_primary()
    task["host"] = host
    task["ensure_primary"]["server"]["port"] = port
    process = await asyncio.create_subprocess_exec(
        temporal_binary(), "workflow", "execute", "--type", "HostTaskWorkflow",
        "--task-queue", queue, "--workflow-id", f"onboard-{host}", "--input", json.dumps(task),
        "--address", temporal_env.client.service_client.config.target_host,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, out.decode()


async def test_ensure_primary_adopts_an_existing_cluster_with_its_data(
        temporal_env: WorkflowEnvironment, agents: Agents, steps: Steps,
        host_tasks: str) -> None:
    """An operator's cluster at ``<data root>/db-orders/data`` (made by plain ``initdb``,
    2,000 rows, no ``wal_log_hints``, stopped) is started by ``ensure_primary``, asked with
    the guide's command, without a new ``initdb``:
    the rows are there, ``wal_log_hints`` is on (so a former primary can be rewound later),
    the agent sees it writable and rewindable, and a standby seeded from it on a second
    agent has every row."""
    primary_agent = await agents.start()
    shadow_agent = await agents.start()
    port, standby_port = free_ports(2)
    task = documented_ensure_primary()["ensure_primary"]
    instance, node = task["server"]["instance_id"], task["server"]["node"]
    existing = PgServer(home=primary_agent.data_root / node, port=port)
    existing.init()
    existing.start()
    with existing.endpoint.connect() as conn:
        conn.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 2000) g")
        assert conn.execute("SHOW wal_log_hints").fetchone() == ("off",)
    system_id = _system_identifier(existing.endpoint)
    existing.stop()

    await run_documented_command(temporal_env, host_tasks, primary_agent.host, port)

    endpoint = PgEndpoint(port=port)
    assert query_one(endpoint, "SELECT count(*) FROM orders") == 2000
    assert _system_identifier(endpoint) == system_id  # the same cluster, not a new initdb
    assert query_one(endpoint, "SHOW wal_log_hints") == "on"
    view = await steps.call(primary_agent.host, "probe_local", node, port,
                            result_type=LocalView, instance=instance)
    assert view.answers and view.writable and not view.standby
    facts = await steps.call(primary_agent.host, "inspect_server", node, port,
                             result_type=NodeFacts, instance=instance)
    assert facts.reachable and facts.rewindable and facts.home == str(existing.home)

    standby = await steps.seed(shadow_agent.host, "shadow", standby_port,  # short socket path
                               PrimarySource("127.0.0.1", port, slot="onboarded"),
                               instance=instance)

    assert standby.standby
    assert query_one(PgEndpoint(port=standby_port), "SELECT count(*) FROM orders") == 2000


def _system_identifier(endpoint: PgEndpoint) -> int:
    return int(query_one(endpoint, "SELECT system_identifier FROM pg_control_system()"))
