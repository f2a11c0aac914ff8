"""Replication between namespace hosts runs over TLS (``sslmode=verify-full`` against the
lab's CA) as a SCRAM role whose password only the hosts' passfiles hold; a wrong password, a
passfile others can read and a primary without TLS are refused when the protection starts,
before anything is created. Real agents, PostgreSQL, HAProxy, Pulumi and Temporal."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from psycopg import pq
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.spec import ProtectionSpec
from infra.local.haproxy import HAProxyManager
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, query_one
from infra.pulumi_engine import StackDriver
from tests.workflows.conftest import (
    control_worker,
    failure_messages,
    primary_ready,
    walsenders,
)
from workers.hosts_lab import PG_PORT, REPLICATION_ROLE, HostsLab
from workers.protect import start_protection, status_when
from workers.registry import pulumi_config
from workers.settings import Settings

pytestmark = pytest.mark.integration


def _login(lab: HostsLab, host: str, password: str, sslmode: str) -> str:
    """libpq's verdict on a replication login to ``host``'s primary as the lab's role, from
    this machine (inside the peers' network): ``"ok"`` or the server's reason."""
    conninfo = PgEndpoint(host=lab.placement(host).address, port=PG_PORT, user=REPLICATION_ROLE,
                          dbname="replication", password=password).conninfo(
        sslmode=sslmode, sslrootcert=str(lab.credentials_dir(host) / "ca.crt"),
        replication="true", connect_timeout="5")
    login = pq.PGconn.connect(conninfo.encode())
    try:
        if login.status == pq.ConnStatus.OK:
            return "ok"
        return " ".join(login.get_error_message().split())
    finally:
        login.finish()


async def _refused(lab: HostsLab, settings: Settings, handle: WorkflowHandle[Any, Any],
                   spec: ProtectionSpec, shadow_host: str) -> str:
    """The protection's failure, once asserted that it left nothing: no stack, no router
    service, no slot on the primary, no server on the shadow's host."""
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert spec.hosts is not None
    assert not StackDriver(pulumi_config(settings)).exists(f"shadow-{spec.instance_id}")
    haproxy = HAProxyManager(settings.state_dir / "haproxy")
    assert not haproxy.running() or spec.instance_id not in haproxy.services()
    primary = PgEndpoint(host=spec.hosts.primary.address, port=spec.primary_port)
    assert query_one(primary, "SELECT count(*) FROM pg_replication_slots") == 0
    shadow_home = lab.hosts[shadow_host].data_dir / "agent" / f"{spec.instance_id}-shadow"
    assert not shadow_home.exists()
    return failure_messages(failed.value)


async def test_the_stream_between_hosts_is_tls_as_the_scram_role_and_no_password_leaks(
    lab: HostsLab, settings: Settings, temporal_env: WorkflowEnvironment, task_queue: str,
) -> None:
    """The shadow's walsender on the primary's host shows ssl=true and the SCRAM role; the
    primary's pg_hba takes replication from the network over TLS with scram-sha-256 only,
    so a wrong password and a plaintext login are refused; the password is in no workflow
    history, Pulumi state, standby setting, agent or server log."""
    client = temporal_env.client
    wa, wb = list(lab.hosts)
    spec = lab.spec("db-tls", wa, wb, free_ports(1)[0], tier=2)
    async with control_worker(client, lab.worker_settings(settings), task_queue):
        await primary_ready(lab, client, task_queue, spec)
        handle = await start_protection(client, spec, task_queue=task_queue)
        await status_when(handle, lambda s: s.phase == "protected", 240)
        history = (await handle.fetch_history()).to_json()
        await handle.terminate("test over")
    primary = PgEndpoint(host=lab.placement(wa).address, port=PG_PORT)
    assert walsenders(primary) == [("db-tls-shadow", True, REPLICATION_ROLE)]
    assert str(query_one(primary, "SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                         (REPLICATION_ROLE,))).startswith("SCRAM-SHA-256$")
    with primary.connect() as conn:
        rules = conn.execute(
            "SELECT type, auth_method FROM pg_hba_file_rules WHERE 'replication' = ANY(database)"
            " AND type <> 'local' AND address <> '127.0.0.1' ORDER BY line_number").fetchall()
    assert rules[:3] == [("hostssl", "scram-sha-256"), ("host", "reject"), ("host", "reject")]
    password = lab.replication_password
    assert _login(lab, wa, password, "verify-full") == "ok"
    assert "password authentication failed" in _login(lab, wa, "not-the-password", "verify-full")
    assert "no encryption" in _login(lab, wa, password, "disable")
    standby_home = lab.hosts[wb].data_dir / "agent" / "db-tls-shadow"
    auto_conf = (standby_home / "data" / "postgresql.auto.conf").read_text()
    assert "sslmode=verify-full" in auto_conf and "passfile=" in auto_conf
    assert stat.S_IMODE((standby_home / "replication.pgpass").stat().st_mode) == 0o600
    assert password not in history
    looked_at = [*settings.state_dir.rglob("*"), *lab.log_dir.glob("*.log"),
                 *(h.data_dir / "agent" for h in lab.hosts.values())]
    holding = [p for p in _files(looked_at) if password.encode() in p.read_bytes()]
    # Only the standby's copy (0600, the server's user's), where it belongs; that the scan
    # finds it shows it reads the agents' files.
    assert holding == [standby_home / "replication.pgpass"], holding


def _files(paths: list[Path]) -> list[Path]:
    """The regular files among ``paths`` and under the folders among them (server logs and
    settings included, data files too)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        elif path.is_file() and not path.is_symlink():
            found.append(path)
    return found


async def test_a_bad_password_a_readable_passfile_or_a_primary_without_tls_creates_nothing(
    lab: HostsLab, settings: Settings, temporal_env: WorkflowEnvironment, task_queue: str,
) -> None:
    """When the protection greets the shadow's host, its agent logs in for replication as
    its copy would: a wrong password in its passfile, or a passfile others can read, is
    refused naming the host and the setting. With agents lacking TLS files, the worker's
    verify-full (the default) refuses the primary for serving no TLS. Each time the
    protection fails with nothing created."""
    client = temporal_env.client
    wa, wb = list(lab.hosts)
    passfile = lab.credentials_dir(wb) / "pgpass"
    good = passfile.read_text()
    async with control_worker(client, lab.worker_settings(settings), task_queue):
        await lab.wait_for_agents(client)

        async def refusal(instance_id: str, port: int) -> str:
            spec = lab.spec(instance_id, wa, wb, free_ports(1)[0], port=port)
            await lab.ensure_primary(client, task_queue, wa, instance_id, port)
            handle = await start_protection(client, spec, task_queue=task_queue)
            return await _refused(lab, settings, handle, spec, wb)

        passfile.write_text(good.replace(lab.replication_password, "not-the-password"))
        message = await refusal("db-badpw", PG_PORT + 1)
        assert f"the agent of {wb} cannot open a replication connection" in message, message
        assert "password authentication failed" in message, message
        assert lab.replication_password not in message

        passfile.write_text(good)
        passfile.chmod(0o644)
        message = await refusal("db-openpf", PG_PORT + 2)
        assert "SHADOWSHIFT_PG_PASSFILE" in message and "chmod 600" in message, message
        passfile.chmod(0o600)

        for name in (wa, wb):  # both hosts' agents without TLS files: nothing serves TLS
            lab.stop_agent(name)
            lab.start_agent(name, pg_settings={})
        await lab.wait_for_agents(client)
        message = await refusal("db-notls", PG_PORT + 3)
        assert "does not offer TLS" in message, message
        assert "SHADOWSHIFT_PG_TLS_CERT" in message, message
