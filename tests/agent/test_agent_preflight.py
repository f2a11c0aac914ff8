"""``shadowshift protect`` with a hosts spec asks Temporal which agents serve the spec's hosts
before it starts anything: a host without an agent, or whose agent runs another ShadowShift
version, is refused naming the spec field and what to do, and no workflow exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.agent import host_task_queue
from contracts.spec_hosts import HostPlacement, HostsSection
from contracts.version import VERSION
from tests.agent.conftest import Agents, new_host
from tests.conftest import polled
from tests.workers.cli_helpers import shadowshift
from workers.agent_presence import check_hosts_served
from workers.cli_base import REFUSED


def hosts_spec(path: Path, instance: str, primary: str, shadow: str) -> Path:
    """A hosts spec as an operator writes it, placing the instance on ``primary``'s host and
    its shadow on ``shadow``'s."""
    path.write_text(
        f"instance_id: {instance}\n"
        "platform: hosts\n"
        "tier: 1\n"
        "primary_port: 5432\n"
        "shadow_port: 5433\n"
        "router_port: 6432\n"
        "hosts:\n"
        f"  primary: {{host: {primary}, address: 10.0.1.21}}\n"
        f"  shadow: {{host: {shadow}, address: 10.0.1.22}}\n")
    return path


async def protect(temporal_env: WorkflowEnvironment, spec: Path) -> tuple[int, str]:
    """Run ``shadowshift protect --no-wait`` on the test's Temporal; exit code and stderr."""
    address = temporal_env.client.service_client.config.target_host
    result = await shadowshift("protect", str(spec), "--no-wait", "--address", address,
                               "--task-queue", f"q-{new_host()}")
    return result.returncode, result.stderr


async def assert_not_started(temporal_env: WorkflowEnvironment, instance: str) -> None:
    """No protection workflow exists for ``instance``."""
    with pytest.raises(RPCError) as missing:
        await temporal_env.client.get_workflow_handle(f"protect-{instance}").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


@activity.defn(name="hello")
async def old_hello(_: object) -> None:
    """Stands in for an agent of another version: only its poller matters here."""


async def test_protect_refuses_a_host_no_agent_serves(
        temporal_env: WorkflowEnvironment, agents: Agents, tmp_path: Path) -> None:
    """The primary's host has a real agent, the shadow's none: exit 5 with one line naming
    ``hosts.shadow.host``, the task queue and the command to run; no workflow. Once an agent
    serves the shadow's host too, the check passes with both agents' identities."""
    primary = await agents.start()
    shadow = new_host()
    instance = f"db-{new_host()}"
    spec = hosts_spec(tmp_path / "spec.yaml", instance, primary.host, shadow)

    code, stderr = await protect(temporal_env, spec)

    assert code == REFUSED, stderr
    assert stderr == (
        f"shadowshift: error: hosts.shadow.host '{shadow}': no agent serves host {shadow} "
        f"(nothing polled task queue {host_task_queue(shadow)} in namespace default in the "
        f"last 90 s): start `shadowshift agent --host {shadow}` on it, or fix the name; "
        "nothing was started\n")
    await assert_not_started(temporal_env, instance)

    second = await agents.start(shadow)
    served = await check_hosts_served(temporal_env.client, HostsSection(
        HostPlacement(primary.host, "10.0.1.21"), HostPlacement(shadow, "10.0.1.22")))
    assert served["primary"].identity == \
        f"shadowshift-agent/{VERSION}@{primary.host}/{primary.process.pid}"
    assert served["shadow"].identity == \
        f"shadowshift-agent/{VERSION}@{shadow}/{second.process.pid}"
    assert served["shadow"].version == VERSION


async def test_protect_refuses_an_agent_of_another_version(
        temporal_env: WorkflowEnvironment, agents: Agents, tmp_path: Path) -> None:
    """The shadow's host is served by an agent of ShadowShift 0.0.9 (a real poller with that
    agent identity): exit 5, the line names both versions and the field; no workflow."""
    primary = await agents.start()
    shadow = new_host()
    instance = f"db-{new_host()}"
    spec = hosts_spec(tmp_path / "spec.yaml", instance, primary.host, shadow)
    old = f"shadowshift-agent/0.0.9@{shadow}/4242"
    async with Worker(temporal_env.client, task_queue=host_task_queue(shadow), identity=old,
                      activities=[old_hello]):
        await polled(temporal_env.client, host_task_queue(shadow))
        code, stderr = await protect(temporal_env, spec)

    assert code == REFUSED, stderr
    assert stderr == (
        f"shadowshift: error: hosts.shadow.host '{shadow}': the agent of host {shadow} runs "
        f"ShadowShift 0.0.9 ({old}) and this shadowshift runs {VERSION}: run the same version "
        "on both sides; nothing was started\n")
    await assert_not_started(temporal_env, instance)
