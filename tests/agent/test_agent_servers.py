"""The agent's server activities, run by a real ``shadowshift agent`` through Temporal on real
PostgreSQL: a primary and its copied standby, a rewind after a promotion by hand, a fence of a
hung server, refusals of another version and of bad input."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from contracts.agent import (
    VERSION_MISMATCH,
    AgentHello,
    AgentInfo,
    LocalView,
    PrimarySource,
    RewindRequest,
    ServerInfo,
    ServerRef,
)
from contracts.errors import INVALID_REQUEST
from contracts.shadow import NodeFacts
from contracts.version import VERSION
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, query_one
from tests.agent.agent_workflow import AgentStep
from tests.agent.conftest import Agents, Steps, tree_mib, until


def application_error(err: WorkflowFailureError) -> ApplicationError:
    """The activity's own failure inside a workflow failure."""
    assert isinstance(err.cause, ActivityError), err.cause
    cause = err.cause.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


def reply_age_s(primary: PgEndpoint, standby: str) -> float | None:
    """Seconds since ``standby``'s last reply as its primary records it (``None``: none)."""
    age = query_one(primary, "SELECT extract(epoch FROM now() - reply_time)::float8 FROM "
                             "pg_stat_replication WHERE application_name = %s AND state = "
                             "'streaming'", (standby,))
    return None if age is None else float(age)


async def test_primary_then_standby_streams_with_fresh_replies(
        agents: Agents, steps: Steps) -> None:
    """ensure_primary initialises and starts a primary; seed_standby copies the fresh cluster
    from it into a standby that streams, replies every second (fresh ``reply_time``) and
    replays new writes; both calls are idempotent and leave the running servers alone."""
    agent = await agents.start()
    primary_port, standby_port = free_ports(2)
    primary = await steps.ensure(agent.host, "a", primary_port)
    assert not primary.standby and primary.address == "127.0.0.1"
    a = PgEndpoint(port=primary_port)
    with a.connect() as conn:
        conn.execute("CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad "
                     "FROM generate_series(1, 1000) g")
    base_mib = tree_mib(Path(primary.data_dir)) - tree_mib(Path(primary.data_dir) / "pg_wal")
    source = PrimarySource("127.0.0.1", primary_port, slot="b_slot")

    standby = await steps.seed(agent.host, "b", standby_port, source)

    assert standby.standby and standby.seed_seconds is not None
    print(f"\nseed of a fresh cluster ({base_mib:.0f} MiB besides its WAL): "
          f"{standby.seed_seconds:.2f} s (activity round trip {steps.durations[-1]:.2f} s)")
    await until(lambda: (reply_age_s(a, "b") or 9) < 1.5, 10, "a fresh reply_time of b")
    b = PgEndpoint(port=standby_port)
    with a.connect() as conn:
        conn.execute("INSERT INTO filler VALUES (-1, 'after the copy')")
    await until(lambda: query_one(b, "SELECT count(*) FROM filler WHERE g = -1") == 1, 10,
                "the new row on the standby")
    assert query_one(a, "SELECT active FROM pg_replication_slots WHERE slot_name = 'b_slot'")

    pids = (agent.catalog.find("a").pg.pid(), agent.catalog.find("b").pg.pid())  # type: ignore[union-attr]
    assert await steps.ensure(agent.host, "a", primary_port) == primary
    again = await steps.seed(agent.host, "b", standby_port, source)
    assert again.standby and again.seed_seconds == standby.seed_seconds
    assert (agent.catalog.find("a").pg.pid(), agent.catalog.find("b").pg.pid()) == pids  # type: ignore[union-attr]

    facts = await steps.call(agent.host, "inspect_server", "a", primary_port,
                             result_type=NodeFacts)
    assert facts.reachable and facts.rewindable and facts.home == str(agent.data_root / "a")
    views = [await steps.call(agent.host, "probe_local", node, port, result_type=LocalView)
             for node, port in (("a", primary_port), ("b", standby_port))]
    assert (views[0].writable, views[0].standby) == (True, False)
    assert (views[1].writable, views[1].standby) == (False, True)
    info = await steps.run(AgentStep(agent.host, "hello", hello=AgentHello(VERSION)), AgentInfo)
    assert (info.host, info.version) == (agent.host, VERSION) and info.free_bytes > 0


async def test_rewind_former_primary_after_promotion_by_hand(
        agents: Agents, steps: Steps) -> None:
    """After its standby is promoted by hand and the former primary took one more write of
    its own, rewind_as_standby winds the (fenced) former primary back, makes it stream from
    the new primary and drops the diverging write; asked again, it only says so."""
    agent = await agents.start()
    a_port, b_port = free_ports(2)
    await steps.ensure(agent.host, "a", a_port)
    a, b = PgEndpoint(port=a_port), PgEndpoint(port=b_port)
    with a.connect() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, origin text)")
        conn.execute("INSERT INTO t VALUES (1, 'before')")
    await steps.seed(agent.host, "b", b_port, PrimarySource("127.0.0.1", a_port, slot="b_slot"))
    await until(lambda: query_one(b, "SELECT count(*) FROM t") == 1, 10, "row 1 on b")

    with b.connect() as conn:
        conn.execute("SELECT pg_promote(true, 30)")
        conn.execute("INSERT INTO t VALUES (2, 'new primary')")
    with a.connect() as conn:
        conn.execute("INSERT INTO t VALUES (3, 'diverging')")
    assert await steps.call(agent.host, "fence_server", "a", a_port, result_type=bool)

    rewind = RewindRequest(VERSION, ServerRef("db", "a", a_port),
                           PrimarySource("127.0.0.1", b_port, slot="a_slot"))
    done = await steps.run(AgentStep(agent.host, "rewind_as_standby", rewind=rewind), str)

    assert done.startswith("rewound in"), done
    await until(lambda: query_one(a, "SELECT count(*) FROM t WHERE id = 2") == 1, 10,
                "the new primary's row on the rewound node")
    assert query_one(a, "SELECT count(*) FROM t WHERE id = 3") == 0
    assert query_one(a, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    view = await steps.call(agent.host, "probe_local", "a", a_port, result_type=LocalView)
    assert view.standby and not view.fenced and not view.writable
    again = await steps.run(AgentStep(agent.host, "rewind_as_standby", rewind=rewind), str)
    assert again == "already streaming"


def _freeze(pid: int) -> list[psutil.Process]:
    """SIGSTOP a postmaster and all its children (a hung server)."""
    postmaster = psutil.Process(pid)
    tree = [postmaster, *postmaster.children(recursive=True)]
    for process in tree:
        process.send_signal(signal.SIGSTOP)
    return tree


async def test_fence_kills_a_hung_server_and_keeps_it_down(
        agents: Agents, steps: Steps) -> None:
    """A SIGSTOPped primary is told from /proc at once by probe_local, fenced by SIGKILL of
    every process, and stays down: ensure_primary refuses it, a start by hand brings it up
    read-only (the fence's standby.signal), and only start_server makes it a writable primary
    again. A second fence is a no-op."""
    agent = await agents.start()
    (port,) = free_ports(1)
    await steps.ensure(agent.host, "a", port)
    server = agent.catalog.find("a")
    assert server is not None and server.pg.pid() is not None
    tree = _freeze(server.pg.pid())  # type: ignore[arg-type]
    await until(lambda: all(p.status() == psutil.STATUS_STOPPED for p in tree), 10,
                "every process stopped")  # a signal takes effect when its target next runs

    started = time.monotonic()
    view = await steps.call(agent.host, "probe_local", "a", port, result_type=LocalView)
    assert not view.answers and "stopped" in view.detail, view
    print(f"\nprobe_local of a SIGSTOPped server: round trip {time.monotonic() - started:.3f} s")

    assert await steps.call(agent.host, "fence_server", "a", port, result_type=bool)
    for process in tree:
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    assert await steps.call(agent.host, "fence_server", "a", port, result_type=bool) is False
    view = await steps.call(agent.host, "probe_local", "a", port, result_type=LocalView)
    assert view.fenced and not view.answers
    with pytest.raises(WorkflowFailureError) as refused:
        await steps.ensure(agent.host, "a", port)
    error = application_error(refused.value)
    assert error.type == INVALID_REQUEST and "start_server" in str(error)

    # By hand, behind the agent's back, once init reaped the killed postmaster (PostgreSQL
    # takes a zombie for a live server).
    await until(lambda: not psutil.pid_exists(tree[0].pid), 30, "the killed postmaster reaped")
    server.pg.start()
    by_hand = await steps.call(agent.host, "probe_local", "a", port, result_type=LocalView)
    assert by_hand.fenced
    assert query_one(PgEndpoint(port=port), "SELECT pg_is_in_recovery()") is True

    await steps.call(agent.host, "start_server", "a", port, result_type=ServerInfo)
    view = await steps.call(agent.host, "probe_local", "a", port, result_type=LocalView)
    assert view.answers and view.writable and not view.fenced


async def test_probe_answers_quickly_from_a_frozen_server(agents: Agents, steps: Steps) -> None:
    """probe_local answers within its 0.3 s deadline from a server frozen in a cgroup v1
    freezer (the hung-host case: the kernel accepts the connection, nobody answers), and in a
    few milliseconds from a healthy one."""
    freezer_root = Path("/sys/fs/cgroup/freezer")
    if not (freezer_root / "cgroup.procs").exists() or os.geteuid() != 0:
        pytest.skip("needs the cgroup v1 freezer and root")
    agent = await agents.start()
    (port,) = free_ports(1)
    await steps.ensure(agent.host, "a", port)
    healthy = []
    for _ in range(5):
        await steps.call(agent.host, "probe_local", "a", port, result_type=LocalView)
        healthy.append(steps.durations[-1])
    server = agent.catalog.find("a")
    assert server is not None
    local = [_timed(lambda: server.local_view(0.3)) for _ in range(20)]
    group = freezer_root / f"shadowshift-test-{agent.host}"
    group.mkdir()
    postmaster = psutil.Process(server.pg.pid())  # type: ignore[arg-type]
    try:
        for process in [postmaster, *postmaster.children(recursive=True)]:
            with contextlib.suppress(ProcessLookupError):  # a backend that just exited
                (group / "cgroup.procs").write_text(f"{process.pid}\n")
        (group / "freezer.state").write_text("FROZEN\n")
        await until(lambda: (group / "freezer.state").read_text().strip() == "FROZEN", 10,
                    "the server frozen")
        view = await steps.call(agent.host, "probe_local", "a", port, result_type=LocalView)
        frozen_round_trip = steps.durations[-1]
        frozen_local = _timed(lambda: server.local_view(0.3))
    finally:
        (group / "freezer.state").write_text("THAWED\n")
        _empty_and_remove(group, freezer_root)
    assert not view.answers and "no answer" in view.detail, view
    assert frozen_local < 0.5
    local.sort()
    print(f"\nprobe_local healthy: in-agent median {local[10] * 1000:.1f} ms (max "
          f"{local[-1] * 1000:.1f}), Temporal round trip median {sorted(healthy)[2]:.3f} s; "
          f"frozen: in-agent {frozen_local * 1000:.0f} ms, round trip {frozen_round_trip:.3f} s")


def _empty_and_remove(group: Path, root: Path, timeout_s: float = 10.0) -> None:
    """Move every process of ``group`` back to ``root`` and remove it: a thawed postmaster
    may fork a child into the group after one pass, so pass again until it is empty."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = (group / "cgroup.procs").read_text().split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                (root / "cgroup.procs").write_text(f"{pid}\n")
        if not pids:
            try:
                group.rmdir()
                return
            except OSError:  # busy: a child joined between the read and the removal
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group} kept processes: {pids}")
        time.sleep(0.05)


def _timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


async def test_other_version_and_bad_input_refused(
        agents: Agents, steps: Steps, tmp_path: Path) -> None:
    """A caller of another version is refused without a retry, the message naming both
    versions; a port another program holds and a data folder that is no cluster are refused
    as InvalidRequest, saying what to change."""
    agent = await agents.start()
    with pytest.raises(WorkflowFailureError) as refused:
        await steps.run(AgentStep(agent.host, "hello", hello=AgentHello("9.9.9")), AgentInfo)
    error = application_error(refused.value)
    assert error.type == VERSION_MISMATCH and error.non_retryable
    assert "9.9.9" in str(error) and VERSION in str(error)
    assert refused.value.cause.retry_state == RetryState.NON_RETRYABLE_FAILURE  # type: ignore[attr-defined]
    (port,) = free_ports(1)
    with pytest.raises(WorkflowFailureError) as probe_refused:
        await steps.call(agent.host, "probe_local", "a", port, result_type=LocalView,
                         version="0.0.1")
    assert application_error(probe_refused.value).type == VERSION_MISMATCH

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(WorkflowFailureError) as port_taken:
            await steps.ensure(agent.host, "p", taken)
    error = application_error(port_taken.value)
    assert error.type == INVALID_REQUEST and str(taken) in str(error)

    stray = agent.data_root / "s" / "data"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("not a cluster\n")
    with pytest.raises(WorkflowFailureError) as foreign:
        await steps.ensure(agent.host, "s", port)
    error = application_error(foreign.value)
    assert error.type == INVALID_REQUEST and "no PostgreSQL cluster" in str(error)
    assert (stray / "notes.txt").exists()
