"""TLS of the control worker's own SQL and of client traffic on the hosts platform.

HAProxy routes in TCP mode, so a client's TLS handshake is with the PostgreSQL server behind
it, end to end: whichever node serves, its own certificate answers. The lab's certificates
name ``127.0.0.1`` (where the router listens) besides each host's address, so a client can
also verify the serving node by the router's address (docs/security.md, "Client traffic
through the router"). The control worker is given the lab's CA (``SHADOWSHIFT_PG_TLS_CA``)
and checks every host's server against it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psycopg
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from contracts.protection import CutoverRequest
from infra.local.pki import LocalPki
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint
from tests.workflows.conftest import control_worker, failure_messages, primary_ready
from workers.hosts_lab import PG_PORT, HostsLab
from workers.protect import start_protection, status_when
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow

pytestmark = pytest.mark.integration


def client_session(conninfo: str) -> tuple[bool, str, str]:
    """``(ssl, protocol version, server address)`` of a fresh session's own backend, from
    the server's side (``pg_stat_ssl`` of ``pg_backend_pid()``)."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT ssl, coalesce(version, ''), host(inet_server_addr()) FROM pg_stat_ssl"
            " WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return bool(row[0]), str(row[1]), str(row[2])


def assert_encrypted_through(router_port: int, ca_file: Path, serving_address: str) -> None:
    """A client through the router gets TLS with ``sslmode=require``, and passes
    ``verify-full`` against the lab's CA by the router's address; the session is served by
    the node at ``serving_address``."""
    router = PgEndpoint(port=router_port)
    ssl, version, address = client_session(router.conninfo(sslmode="require"))
    assert (ssl, address) == (True, serving_address), (ssl, version, address)
    assert version.startswith("TLSv1."), version
    verified = dataclasses.replace(router, ca_file=ca_file)  # verify-full, host 127.0.0.1
    assert client_session(verified.conninfo()) == (True, version, serving_address)


async def test_clients_through_the_router_are_encrypted_before_and_after_a_cutover(
    lab: HostsLab, settings: Settings, temporal_env: WorkflowEnvironment, task_queue: str,
) -> None:
    """A client connecting through the router with ``sslmode=require`` gets an encrypted
    session on the serving node (its backend's ``pg_stat_ssl``), and one with
    ``verify-full`` and the lab's CA verifies it by the router's address; after a planned
    cutover (the worker's SQL to both hosts verified against the same CA throughout) the
    same holds on the new primary's host."""
    client = temporal_env.client
    wa, wb = list(lab.hosts)
    assert lab.ca_file is not None
    router_port = free_ports(1)[0]
    spec = lab.spec("db-cltls", wa, wb, router_port, tier=2)
    async with control_worker(client, lab.worker_settings(settings), task_queue):
        await primary_ready(lab, client, task_queue, spec)
        handle = await start_protection(client, spec, task_queue=task_queue)
        await status_when(handle, lambda s: s.phase == "protected", 240)
        assert_encrypted_through(router_port, lab.ca_file, lab.placement(wa).address)

        await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                    CutoverRequest("clients follow over TLS"))
        status = await status_when(handle, lambda s: s.cutovers == 1 and bool(s.recoveries)
                                   and s.phase == "protected", 240)
        assert status.primary_node == "db-cltls-shadow"
        assert_encrypted_through(router_port, lab.ca_file, lab.placement(wb).address)
        await handle.terminate("test over")


async def test_a_worker_whose_ca_did_not_issue_the_hosts_certificates_refuses_the_primary(
    lab: HostsLab, settings: Settings, temporal_env: WorkflowEnvironment, task_queue: str,
    tmp_path: Path,
) -> None:
    """The control worker's SQL to a host uses ``verify-full`` against its
    ``SHADOWSHIFT_PG_TLS_CA``: given a CA that did not issue the hosts' certificates, the
    protection fails at the primary's check, naming the setting, with no slot made."""
    client = temporal_env.client
    wa, wb = list(lab.hosts)
    foreign = LocalPki(tmp_path / "foreign-pki")
    foreign.ensure_ca()
    worker_settings = dataclasses.replace(settings, pg_tls_ca=foreign.ca_file)
    spec = lab.spec("db-foreignca", wa, wb, free_ports(1)[0], tier=2)
    async with control_worker(client, worker_settings, task_queue):
        await primary_ready(lab, client, task_queue, spec)
        handle = await start_protection(client, spec, task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    message = failure_messages(failed.value)
    assert "SHADOWSHIFT_PG_TLS_CA" in message and "verify-full" in message, message
    with PgEndpoint(host=lab.placement(wa).address, port=PG_PORT).connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
