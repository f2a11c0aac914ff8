"""The agent as a process: killed mid-copy and replaced, refused when its host already has an
agent, stopped by SIGTERM without its servers, and missed (a task nobody picks up fails its
schedule-to-start timeout, the contract's "agent down" signal)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType

from contracts.agent import LocalView, PrimarySource, SeedRequest, ServerInfo, ServerRef
from contracts.version import VERSION
from infra.local.pki import LocalPki
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, query_one
from tests.agent.agent_workflow import AgentStep, AgentStepWorkflow
from tests.agent.conftest import Agents, Steps, agent_env, new_host, tree_mib, until
from workers.agent import STANDBY_CHECK_S
from workers.settings import REPO_ROOT


def copiers(partial: Path) -> list[psutil.Process]:
    """The processes copying into ``partial`` (``runuser``, ``pg_basebackup`` and its WAL
    child)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if str(partial) in cmdline and process.status() != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


async def test_agent_killed_mid_copy_is_replaced_and_the_copy_converges(
        agents: Agents, steps: Steps) -> None:
    """The agent is SIGKILLed while pg_basebackup copies (the copy held mid-way, orphaned,
    still holding the copy lock); a new agent for the same host and data root starts at once
    (the dead one's poller does not count), picks up the retried task, kills the orphan, redoes
    the copy and leaves a streaming standby with every row, no partial copy, no copy process
    and one slot."""
    first = await agents.start()
    a_port, b_port = free_ports(2)
    await steps.ensure(first.host, "a", a_port)
    a = PgEndpoint(port=a_port)
    with a.connect() as conn:
        conn.execute("CREATE TABLE filler AS SELECT g, repeat('x', 400) AS pad "
                     "FROM generate_series(1, 150000) g")
    partial = first.data_root / "b" / "data.partial"
    request = SeedRequest(VERSION, ServerRef("db", "b", b_port),
                          PrimarySource("127.0.0.1", a_port, slot="b_slot"))
    handle = await steps.client.start_workflow(
        AgentStepWorkflow.run, AgentStep(first.host, "seed_standby", seed=request, heartbeat_s=5),
        id=f"seed-{uuid.uuid4().hex[:8]}", task_queue=steps.task_queue, result_type=ServerInfo)

    await until(lambda: copiers(partial) and tree_mib(partial) > 1, 60, "the copy under way")
    copy = copiers(partial)
    for process in copy:
        process.suspend()  # hold it mid-way, so the kill lands inside the copy
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    assert all(process.is_running() for process in copy), "the copy should outlive its agent"

    second = await agents.start(first.host, data_root=first.data_root)
    standby = await handle.result()

    assert standby.standby
    assert not copiers(partial) and not partial.exists()
    b = PgEndpoint(port=b_port)
    assert query_one(b, "SELECT count(*) FROM filler") == 150000
    assert query_one(b, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    assert query_one(a, "SELECT count(*) FROM pg_replication_slots") == 1
    assert query_one(a, "SELECT count(*) FROM pg_stat_replication") == 1
    log = second.log_text()
    assert "Ignoring the poller of this data root's previous agent" in log
    assert "copy process(es) left by a previous agent" in log
    attempts = [event.activity_task_started_event_attributes.attempt
                async for event in handle.fetch_history_events()
                if event.HasField("activity_task_started_event_attributes")]
    assert max(attempts) >= 2


async def test_second_agent_for_a_host_is_refused(agents: Agents) -> None:
    """A second agent for a host that has one exits 2 with one line naming the first agent's
    identity: through Temporal's pollers from another data root, through the data root's
    lock from the same one. The refused agent leaves nothing: the data root it made for
    itself is gone, the first agent's files are untouched."""
    first = await agents.start()
    identity = f"shadowshift-agent/{VERSION}@{first.host}/{first.process.pid}"
    first_files = sorted(p.name for p in first.data_root.iterdir())

    elsewhere = agents.launch(first.host, data_root=agents.tmp_path / "elsewhere" / "root")
    same_root = agents.launch(first.host, data_root=first.data_root)

    for refused in (elsewhere, same_root):
        assert refused.process.wait(timeout=60) == 2
        lines = refused.log_text().strip().splitlines()
        assert len(lines) == 1 and identity in lines[0], lines
    assert "already served by" in elsewhere.log_text()
    assert "already runs on" in same_root.log_text()
    assert first.process.poll() is None
    assert not (agents.tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in first.data_root.iterdir()) == first_files
    assert (first.data_root / "agent.identity").read_text().strip() == identity


async def test_a_sigkilled_agent_is_replaced_from_its_data_root_only(agents: Agents) -> None:
    """Right after an agent is SIGKILLed, Temporal still lists its poller: an agent for the
    host on another data root is refused naming the dead one (it might be alive elsewhere),
    an agent on the dead one's data root is accepted at once (its lock proves the dead one
    gone) and serves the host."""
    first = await agents.start()
    dead = f"shadowshift-agent/{VERSION}@{first.host}/{first.process.pid}"
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()

    elsewhere = agents.launch(first.host, data_root=agents.tmp_path / "elsewhere")
    assert elsewhere.process.wait(timeout=60) == 2
    assert f"host {first.host} is already served by {dead}" in elsewhere.log_text()

    second = await agents.start(first.host, data_root=first.data_root)
    assert f"Ignoring the poller of this data root's previous agent, {dead}" in \
        second.log_text()
    status, health = second.http("GET", "/health")
    assert status == 200 and health["host"] == first.host


async def test_sigterm_stops_the_agent_and_leaves_its_servers_running(
        agents: Agents, steps: Steps) -> None:
    """SIGTERM drains the agent and exits 0; the servers it manages keep running."""
    agent = await agents.start()
    (port,) = free_ports(1)
    await steps.ensure(agent.host, "a", port)
    started = time.monotonic()
    assert agent.terminate() == 0
    print(f"\nagent stopped {time.monotonic() - started:.2f} s after SIGTERM")
    assert "Agent stopped." in agent.log_text()
    assert query_one(PgEndpoint(port=port), "SELECT 1") == 1


async def test_a_task_for_a_host_without_agent_fails_its_schedule_to_start(
        steps: Steps) -> None:
    """With no agent polling the host's queue, a task fails its schedule-to-start timeout
    (1 s here, the failure detector's PROBE_PICKUP_S): that failure is the contract's signal
    that the agent is down."""
    started = time.monotonic()
    with pytest.raises(WorkflowFailureError) as failed:
        await steps.call(new_host(), "probe_local", "a", 5432, result_type=LocalView,
                         schedule_to_start_s=1.0)
    elapsed = time.monotonic() - started
    assert isinstance(failed.value.cause, ActivityError)
    timeout = failed.value.cause.cause
    assert isinstance(timeout, TimeoutError) and timeout.type == TimeoutType.SCHEDULE_TO_START
    assert 1.0 <= elapsed < 5.0, elapsed
    print(f"\nno agent: the probe failed its 1 s schedule-to-start after {elapsed:.2f} s")


@pytest.mark.integration  # runs our program
def test_bad_options_exit_with_one_line(tmp_path: Path) -> None:
    """A host name outside the rules exits 2, an unreachable Temporal exits 3, each with one
    line saying what to change; the data root it would have used is not left behind."""
    def agent(*args: str, address: str = "127.0.0.1:1") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workers.cli", "agent", *args],
                              cwd=REPO_ROOT, env=agent_env(address), capture_output=True,
                              text=True, timeout=60)

    bad_name = agent("--host", "Bad_Name")
    assert bad_name.returncode == 2 and "--host" in bad_name.stderr
    assert len(bad_name.stderr.strip().splitlines()) == 1
    unreachable = agent("--host", "lonely", "--data-root", str(tmp_path / "root"))
    assert unreachable.returncode == 3, unreachable.stderr
    assert "cannot reach Temporal at 127.0.0.1:1" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "root")  # nothing half-created


@pytest.mark.integration  # runs our program
def test_postgres_tls_files_for_another_address_are_refused_at_start(tmp_path: Path) -> None:
    """A server certificate that does not name the agent's --address (a standby verifying
    the primary would refuse it; set-up's certificates name 127.0.0.1 besides the host's)
    exits 2 with one line naming SHADOWSHIFT_PG_TLS_CERT, before Temporal is even tried; the
    data root is not created."""
    pki = LocalPki(tmp_path / "pki")
    issued = pki.server_cert("host-a", ("198.18.7.11",))
    env = agent_env("127.0.0.1:1") | {"SHADOWSHIFT_PG_TLS_CA": str(pki.ca_file),
                                      "SHADOWSHIFT_PG_TLS_CERT": str(issued.cert),
                                      "SHADOWSHIFT_PG_TLS_KEY": str(issued.key)}
    refused = subprocess.run(
        [sys.executable, "-m", "workers.cli", "agent", "--host", "host-a", "--address",
         "198.18.7.10", "--data-root", str(tmp_path / "root")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert "SHADOWSHIFT_PG_TLS_CERT" in refused.stderr and "198.18.7.10" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not os.path.exists(tmp_path / "root")


async def test_a_restarted_agent_starts_its_standbys_and_never_a_primary(
        agents: Agents, steps: Steps) -> None:
    """The host crashed (agent and servers SIGKILLed) and came back: the new agent starts the
    standby, which streams from its primary again, and leaves the primary it found down
    alone (it may have been failed over meanwhile). Its watchdog restarts a standby that dies
    later, never one stopped on request."""
    first = await agents.start()
    a_port, b_port, c_port = free_ports(3)
    await steps.ensure(first.host, "a", a_port)
    await steps.seed(first.host, "b", b_port, PrimarySource("127.0.0.1", a_port, slot="b_slot"))
    await steps.ensure(first.host, "c", c_port)  # a primary that will be down at the restart
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    for node in ("b", "c"):
        server = first.catalog.find(node)
        assert server is not None
        server.kill_tree()
    second = await agents.start(first.host, data_root=first.data_root)
    a = PgEndpoint(port=a_port)
    await until(lambda: query_one(a, "SELECT count(*) FROM pg_stat_replication WHERE "
                                     "application_name = 'b' AND state = 'streaming'") == 1,
                30, "b streaming again")
    assert "Started standby b" in second.log_text()
    c = second.catalog.find("c")
    assert c is not None and not c.running()
    # The watchdog keeps it up (a crash, a full disk): killed again, it is started again...
    b = second.catalog.find("b")
    assert b is not None
    b.kill_tree()
    await until(lambda: b.running() and query_one(
        a, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'b' AND "
           "state = 'streaming'") == 1, 30, "b restarted by the watchdog")
    # ...but one stopped on request stays down.
    assert await steps.call(second.host, "stop_server", "b", b_port, result_type=bool)
    await asyncio.sleep(STANDBY_CHECK_S * 2)  # two watchdog rounds: it must not start it
    assert not b.running()
