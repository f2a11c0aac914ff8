"""A protection on the hosts platform: primary and shadow on two namespace hosts, each with
its agent; provisioning copies the standby through its host's agent, a planned cutover moves
the traffic across hosts, and the former primary is rewound by its own agent. Replication
between the hosts runs over TLS as the lab's SCRAM role (tests/workflows/
test_hosts_replication_security.py shows what is refused)."""

from __future__ import annotations

import time

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from contracts.protection import CutoverRequest
from infra.local.haproxy import HAProxyManager
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint
from infra.local.probe import postmaster_answers
from tests.conftest import acked_after
from tests.workflows.conftest import control_worker, primary_ready, walsenders
from workers.hosts_lab import PG_PORT, REPLICATION_ROLE, HostsLab
from workers.protect import start_protection, status_when
from workers.settings import Settings
from workers.workload import Writer, missing_acked, prepare_table
from workflows.protection import InstanceProtectionWorkflow

pytestmark = pytest.mark.integration


async def test_a_protection_on_two_hosts_cuts_over_and_rejoins_across_them(
    lab: HostsLab, settings: Settings, temporal_env: WorkflowEnvironment, task_queue: str,
) -> None:
    """Tier 1 across hosts: the router service is created (onboarding), the standby is copied
    on ``wb`` by its agent and streams synchronously from ``wa`` over TLS as the SCRAM role; a
    planned cutover under writes loses nothing, and ``wa``'s agent rewinds the former primary
    into the new shadow, which streams from ``wb`` over TLS too (``wb`` serves its own
    certificate)."""
    client = temporal_env.client
    wa, wb = list(lab.hosts)
    router_port = free_ports(1)[0]
    spec = lab.spec("db-hosts", wa, wb, router_port, tier=1)
    async with control_worker(client, lab.worker_settings(settings), task_queue):
        await primary_ready(lab, client, task_queue, spec)
        handle = await start_protection(client, spec, task_queue=task_queue)
        status = await status_when(handle, lambda s: s.phase == "protected", 240)
        assert status.shadow_healthy
        wa_primary = PgEndpoint(host=lab.placement(wa).address, port=PG_PORT)
        assert walsenders(wa_primary) == [("db-hosts-shadow", True, REPLICATION_ROLE)]
        router = PgEndpoint(port=router_port)
        prepare_table(router)
        with Writer(router, rate=50) as writer:
            await acked_after(writer)
            await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                        CutoverRequest("move to the other host"))
            status = await status_when(handle, lambda s: s.cutovers == 1 and s.recoveries
                                   and s.phase == "protected", 240)
            await acked_after(writer, since=time.monotonic())
        await handle.terminate("test over")
    assert status.primary_node == "db-hosts-shadow" and status.recoveries == ["rejoined"]
    wb_address = lab.placement(wb).address
    assert missing_acked(PgEndpoint(host=wb_address, port=PG_PORT), writer.stats.acked_ids) == []
    assert postmaster_answers(lab.placement(wa).address, PG_PORT)
    with PgEndpoint(host=wb_address, port=PG_PORT).connect() as conn:
        row = conn.execute("SELECT application_name, sync_state, host(client_addr), ssl, usename "
                           "FROM pg_stat_replication JOIN pg_stat_ssl USING (pid)").fetchone()
    assert row == ("db-hosts", "sync", lab.placement(wa).address, True, REPLICATION_ROLE), row


async def test_a_protection_started_without_the_cli_refuses_a_host_no_agent_serves(
    lab: HostsLab, settings: Settings, temporal_env: WorkflowEnvironment, task_queue: str,
) -> None:
    """Started as the plain ``temporal`` CLI would (no preflight of ours): the workflow greets
    both hosts' agents first, so a shadow host without an agent fails the protection at once,
    naming the host, with nothing created (no router service, no slot on the primary)."""
    client = temporal_env.client
    wa, wb = list(lab.hosts)
    router_port = free_ports(1)[0]
    spec = lab.spec("db-noagent", wa, wb, router_port, tier=1)
    async with control_worker(client, lab.worker_settings(settings), task_queue):
        await primary_ready(lab, client, task_queue, spec)
        lab.stop_agent(wb)
        handle = await start_protection(client, spec, task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    message = str(failed.value.cause)
    assert f"shadowshift agent --host {wb}" in message, message
    haproxy = HAProxyManager(settings.state_dir / "haproxy")
    assert not haproxy.running() or spec.instance_id not in haproxy.services()
    with PgEndpoint(host=lab.placement(wa).address, port=PG_PORT).connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
