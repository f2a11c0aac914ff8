"""The AWS platform with the node agent on the shadow's instance: the standby gets seeded.

moto holds the EC2 instances (their ``shadowshift:endpoint`` tags point at this machine, as
``tests/infra/aws/pg_world.py`` explains); the primary is a real PostgreSQL; the shadow
instance's agent is the real ``shadowshift agent``, started here as the instance's user data
would start it (moto runs no user data: ``test_program.py`` checks that script), polling the
shadow node's queue on a real Temporal. The copy runs through ``HostTaskWorkflow``, as the
protection routes it. (``pulumi up`` of the AWS program needs the provider plugin, which
cannot be built here: DESIGN.md §3.)
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from infra.aws.agent_platform import AwsAgentPlatform, slot_name
from infra.factory import Platforms
from infra.local.ports import free_port
from infra.local.postgres import PgEndpoint, query_one
from infra.platform import PlatformContext
from infra.pulumi_engine import StackDriver
from tests.agent.conftest import Agents, agents_under
from tests.conftest import LocalService
from tests.infra.aws.conftest import empty_account, moto_server, point_boto3_at
from tests.infra.aws.pg_world import build_pg_world
from workers.settings import Settings
from workers.task_runner import TaskRunner

pytestmark = pytest.mark.integration


@pytest.fixture
def agents(temporal_env: WorkflowEnvironment) -> Iterator[Agents]:
    """Agent processes of the test's own (``tests/agent/conftest.py``'s, for this folder),
    their data under a short folder: a server's socket lives there, and a socket path holds
    at most 107 characters (pytest's own folder for this test is longer)."""
    base = Path(tempfile.mkdtemp(prefix="ssa", dir="/tmp"))
    try:
        with agents_under(temporal_env, base) as started:
            yield started
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """One moto_server process for the module."""
    with moto_server() as url:
        yield url


async def test_the_shadow_instances_agent_seeds_the_standby(
    agents: Agents, local_service: LocalService, moto_url: str,
    monkeypatch: pytest.MonkeyPatch, temporal_env: WorkflowEnvironment, settings: Settings,
    stack_driver: StackDriver,
) -> None:
    """With ``aws.agent``, the platform hands the copy to the shadow node's agent (the boot
    time as its pickup bound), after making the primary's slot; the agent copies and starts
    the standby, which the platform then sees streaming, and asks for no further copy."""
    point_boto3_at(moto_url, monkeypatch)
    clients = empty_account(moto_url)
    spec = local_service.request.spec
    shadow_port = free_port()
    world = build_pg_world(clients, spec.instance_id, spec.primary_port, shadow_port)
    address = temporal_env.client.service_client.config.target_host
    request = world.request(1, agent={"temporal_address": address, "boot_s": 120})
    platform = Platforms(PlatformContext(stack_driver, settings.state_dir)).platform_for(request)
    assert isinstance(platform, AwsAgentPlatform) and platform.capabilities.agents
    primary, shadow = world.nodes
    agent = await agents.start(shadow)  # what the instance's user data starts

    task = platform.seed_task()

    assert task is not None and task.seed is not None
    assert (task.host, task.pickup_s) == (shadow, 120.0)
    assert (task.seed.server.node, task.seed.server.port) == (shadow, shadow_port)
    assert (task.seed.source.port, task.seed.source.slot) == (spec.primary_port,
                                                              slot_name(shadow))
    primary_db = PgEndpoint(port=spec.primary_port)
    assert query_one(primary_db, "SELECT count(*) FROM pg_replication_slots WHERE "
                                 "slot_name = %s", (slot_name(shadow),)) == 1
    runner = TaskRunner(address).start()
    try:
        await asyncio.to_thread(runner.run, task)
    finally:
        runner.close()
    assert platform.replication_between(primary, shadow).state == "streaming"
    assert platform.seed_task() is None
    assert (agent.data_root / shadow / "data" / "standby.signal").exists()
    platform.close()
