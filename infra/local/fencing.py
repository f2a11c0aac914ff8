"""Fencing, catch-up and promotion of local PostgreSQL nodes, in as few round trips as we can.

The cutover's critical window (fence → traffic on the shadow) is what clients feel, so these
helpers reuse one cached connection per server (:class:`NodeSessions`) instead of paying a
backend fork per statement, and poll in milliseconds instead of sleeping in seconds.

What "fenced" means here: ``default_transaction_read_only`` is on and confirmed reloaded, and
every client backend that existed has exited. A backend killed while waiting for a
synchronous standby never acknowledges its commit, so after the fence the server's flushed
WAL position bounds every write it ever acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg

from infra.errors import InfraError
from infra.local.postgres import PgEndpoint, PgServer, alter_system
from infra.local.probe import PROBE_TIMEOUT_S, postmaster_answers
from infra.platform import Health, ReplicationStatus

log = logging.getLogger(__name__)

_POLL_S = 0.001
"""Poll interval inside the critical window: a round trip on a cached session is ~0.2 ms."""
STATEMENT_DEADLINE_S = 10.0
"""Longest a statement on a cached session may take before the session is cut (see
:func:`_deadline`). A healthy server answers the cutover's statements in milliseconds and a
``CHECKPOINT`` in seconds; a hung one never answers, and nothing on the server can time out."""


class ServerHangs(psycopg.OperationalError):
    """A statement got no answer before its deadline: the server hangs (not retried on a new
    connection, which would wait as long again)."""


PROBE_DEADLINE_S = 2.0
"""Deadline of a health probe's statement: a healthy server answers in a millisecond."""


class _Watchdog:
    """One daemon thread that cuts the socket of any statement past its deadline.

    Why by hand: a frozen server's kernel still accepts and acknowledges our packets, so TCP
    keepalives and ``tcp_user_timeout`` never fire; ``statement_timeout`` runs on the server,
    which is frozen; libpq's cancel opens a new connection to the same frozen postmaster. Only
    shutting the socket down from another thread unblocks the read. One thread checking twice
    a second keeps arming a deadline at a dict insert (the critical path runs statements every
    millisecond; a timer thread each would cost more than the round trip).
    """

    _TICK_S = 0.25

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, int]] = {}
        self._cut: set[int] = set()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def deadline(self, conn: psycopg.Connection, seconds: float) -> Iterator[None]:
        """Cut ``conn`` if the block outlives ``seconds``; its error then says so."""
        key = id(conn)
        with self._lock:
            self._armed[key] = (time.monotonic() + seconds, conn.fileno())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pg-deadline",
                                                daemon=True)
                self._thread.start()
        try:
            yield
        except psycopg.Error as err:
            if key in self._cut:
                raise ServerHangs(f"no answer within {seconds:g} s: the server hangs") from err
            raise
        finally:
            with self._lock:
                self._armed.pop(key, None)
                self._cut.discard(key)

    def _run(self) -> None:
        while True:
            time.sleep(self._TICK_S)
            now = time.monotonic()
            with self._lock:
                late = [(key, fd) for key, (due, fd) in self._armed.items() if due <= now]
                for key, _ in late:
                    del self._armed[key]
                    self._cut.add(key)
            for _, fd in late:
                with contextlib.suppress(OSError):  # closed meanwhile: nothing to unblock
                    sock = socket.socket(fileno=os.dup(fd))
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.close()


_WATCHDOG = _Watchdog()


def _require_answer(endpoint: PgEndpoint) -> None:
    """Before a TCP connection: the postmaster must answer within
    :data:`~infra.local.probe.PROBE_TIMEOUT_S`. libpq's connect timeout cannot go under 2 s,
    and a frozen or cut-off server (a kernel that completes the handshake, packets dropped)
    would hold every probe that long; a live postmaster answers in well under a millisecond.

    Raises:
        ServerHangs: it did not answer (not retried).
    """
    if endpoint.host.startswith("/"):
        return  # a unix socket: no handshake to hang in
    if not postmaster_answers(endpoint.host, endpoint.port):
        raise ServerHangs(f"the server at {endpoint.host}:{endpoint.port} does not answer "
                          f"within {PROBE_TIMEOUT_S} s")


class NodeSessions:
    """One cached autocommit connection per server, reopened once when it broke."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, int], psycopg.Connection] = {}
        """By address and port: servers on different hosts may share a port."""

    def run(self, endpoint: PgEndpoint, statement: str, params: tuple[Any, ...] = (), *,
            timeout_s: float = STATEMENT_DEADLINE_S) -> Any:
        """Execute ``statement`` and return its first row (``None`` when there is none); a
        server that does not answer within ``timeout_s`` counts as unreachable.

        Raises:
            psycopg.OperationalError: the server cannot be reached (after one reconnect).
        """
        for attempt in (0, 1):
            conn = self._conns.get((endpoint.host, endpoint.port))
            fresh = conn is None or conn.closed
            try:
                if conn is None or conn.closed:
                    _require_answer(endpoint)
                    conn = endpoint.connect(timeout_s=2)
                    self._conns[endpoint.host, endpoint.port] = conn
                with _WATCHDOG.deadline(conn, timeout_s):
                    cursor = conn.execute(statement, params)
                    return cursor.fetchone() if cursor.description else None
            except psycopg.OperationalError as err:
                self.drop(endpoint)
                # Reconnect once for a cached session that broke; a fresh connection that
                # failed would only fail again.
                if attempt or fresh or isinstance(err, ServerHangs):
                    raise
        return None  # unreachable: the loop returns or raises

    def connection(self, endpoint: PgEndpoint) -> psycopg.Connection:
        """The cached connection to ``endpoint`` (opened if needed)."""
        self.run(endpoint, "SELECT 1")
        return self._conns[endpoint.host, endpoint.port]

    def drop(self, endpoint: PgEndpoint) -> None:
        """Forget (and close) the connection to ``endpoint``."""
        conn = self._conns.pop((endpoint.host, endpoint.port), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close every cached connection."""
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def persist_read_only(sessions: NodeSessions, endpoint: PgEndpoint, read_only: bool) -> None:
    """Write ``default_transaction_read_only`` to postgresql.auto.conf without reloading.

    The write is fsynced (milliseconds on a busy disk) and changes nothing for clients until
    :func:`reload_read_only`, so the fence pays it before the client-visible window opens.
    """
    conn = sessions.connection(endpoint)
    alter_system(conn, "default_transaction_read_only", "on" if read_only else None)


def reload_read_only(sessions: NodeSessions, endpoint: PgEndpoint, read_only: bool) -> None:
    """Reload and wait until the server runs with the persisted read-only setting.

    Our own backend learns of the reload only after the postmaster re-read the file, so once
    it reports the new value every backend forked from then on has it too.
    """
    conn = sessions.connection(endpoint)
    conn.execute("SELECT pg_reload_conf()")
    wanted = ("on" if read_only else "off",)
    deadline = time.monotonic() + 5
    while conn.execute("SELECT current_setting('default_transaction_read_only')").fetchone() != (
        wanted
    ):
        if time.monotonic() > deadline:
            raise InfraError(f"port {endpoint.port} did not reload read-only={wanted[0]}")
        time.sleep(_POLL_S)


def set_read_only(sessions: NodeSessions, endpoint: PgEndpoint, read_only: bool) -> None:
    """Persist and apply ``default_transaction_read_only``."""
    persist_read_only(sessions, endpoint, read_only)
    reload_read_only(sessions, endpoint, read_only)


def end_client_sessions(sessions: NodeSessions, endpoint: PgEndpoint) -> int:
    """Terminate every other client backend and wait until they have exited.

    ``pg_terminate_backend(pid, timeout)`` re-checks only every 10 ms; we poll every 1 ms.
    """
    row = sessions.run(
        endpoint,
        # OFFSET 0 keeps the planner from evaluating pg_terminate_backend on our own pid
        "SELECT coalesce(array_agg(pid) FILTER (WHERE pg_terminate_backend(pid)), '{}')"
        " FROM (SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND pid <> pg_backend_pid() OFFSET 0) AS clients",
    )
    pids = list(row[0]) if row else []
    deadline = time.monotonic() + 5
    while pids:
        alive = sessions.run(
            endpoint, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        )
        if not alive or alive[0] == 0:
            break
        if time.monotonic() > deadline:
            raise InfraError(f"{alive[0]} client sessions on port {endpoint.port} did not end")
        time.sleep(_POLL_S)
    return len(pids)


def fence_server(sessions: NodeSessions, endpoint: PgEndpoint) -> None:
    """Read-only by default, confirmed; then no client backend that predates it survives."""
    set_read_only(sessions, endpoint, True)
    end_client_sessions(sessions, endpoint)


def probe_server(sessions: NodeSessions, endpoint: PgEndpoint) -> Health:
    """Whether the server answers, is a standby, and would accept a write now (on a cached
    session); unreachable is an answer, not an error."""
    try:
        row = sessions.run(
            endpoint,
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')",
            timeout_s=PROBE_DEADLINE_S,
        )
    except psycopg.OperationalError as err:
        return Health(False, False, str(err).strip().splitlines()[0])
    recovering, read_only = row if row else (True, "on")
    writable = not recovering and read_only == "off"
    detail = "" if writable else ("standby" if recovering else "read-only")
    return Health(True, writable, detail, in_recovery=bool(recovering))


def in_recovery(sessions: NodeSessions, endpoint: PgEndpoint) -> bool:
    """Whether the server is a standby."""
    row = sessions.run(endpoint, "SELECT pg_is_in_recovery()")
    return bool(row and row[0])


def flushed_position(sessions: NodeSessions, endpoint: PgEndpoint) -> str:
    """A primary's flushed WAL position; a standby's replayed one."""
    row = sessions.run(
        endpoint,
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
        " ELSE pg_current_wal_flush_lsn() END::text",
    )
    if not row or row[0] is None:
        raise InfraError(f"port {endpoint.port} reports no WAL position")
    return str(row[0])


def replay_gap(sessions: NodeSessions, endpoint: PgEndpoint, position: str | None) -> int:
    """Bytes between ``position`` (default: what was received) and what was replayed."""
    row = sessions.run(
        endpoint,
        "SELECT pg_wal_lsn_diff(coalesce(%s::pg_lsn, pg_last_wal_receive_lsn(),"
        " pg_last_wal_replay_lsn()), pg_last_wal_replay_lsn())",
        (position,),
    )
    return int(row[0]) if row and row[0] is not None else 0


def promote_server(
    sessions: NodeSessions,
    endpoint: PgEndpoint,
    *,
    timeout_s: float = 60,
    on_wait: Callable[[], None] | None = None,
) -> bool:
    """Promote a standby and wait until it accepts writes; ``False`` if it already did.

    ``pg_promote(wait => true)`` and ``pg_ctl promote -w`` both check every 100 ms; asking
    without waiting and polling the cached session every millisecond saves most of that.
    """
    if not in_recovery(sessions, endpoint):
        return False
    try:
        sessions.run(endpoint, "SELECT pg_promote(false)")
    except psycopg.OperationalError:
        raise  # unreachable: the caller's retry decides
    except psycopg.Error as err:  # e.g. the signal file cannot be written
        raise InfraError(f"promotion of port {endpoint.port} refused: {err}") from err
    deadline = time.monotonic() + timeout_s
    polls = 0
    while in_recovery(sessions, endpoint):
        polls += 1
        if on_wait is not None and polls % 200 == 0:
            on_wait()
        if time.monotonic() > deadline:
            raise InfraError(f"port {endpoint.port} still in recovery after {timeout_s}s")
        time.sleep(_POLL_S)
    return True


def stop_server(sessions: NodeSessions, endpoint: PgEndpoint) -> str | None:
    """Fence, then stop the server if it answers; returns its data directory, else ``None``.

    The data directory comes from the server itself, so this also works for a primary whose
    files ShadowShift did not create.
    """
    try:
        row = sessions.run(endpoint, "SHOW data_directory", timeout_s=PROBE_DEADLINE_S)
        fence_server(sessions, endpoint)
    except psycopg.OperationalError:
        sessions.drop(endpoint)
        return kill_hung_server(endpoint.port, host=endpoint.host)
    sessions.drop(endpoint)
    data_dir = Path(str(row[0]))
    PgServer(home=data_dir.parent, port=endpoint.port).stop(mode="fast", timeout_s=30)
    return str(data_dir)


def kill_hung_server(port: int, *, host: str = "127.0.0.1",
                     timeout_s: float = 10.0) -> str | None:
    """SIGKILL the server listening on ``port`` on this host and every process it started;
    its data directory (the postmaster's working directory), ``None`` when nothing listens.

    For a server that does not answer: a hung or frozen one cannot be asked to stop, and left
    alone it would take writes again the moment it thaws. SIGKILL ends a stopped process too;
    the postmaster goes first (nothing restarts a child), then every child at once (no orphaned
    backend finishes a commit on its own).

    A refused connection (a crashed server: nothing listens) returns at once: the listener
    scan below reads every process's sockets, about 20 ms on an idle machine, which the
    unplanned failover would otherwise pay on every crash.
    """
    if _refused(host, port):
        return None
    listeners = {c.pid for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    if not listeners:
        return None
    postmaster = psutil.Process(min(listeners))
    try:
        data_dir = postmaster.cwd()
        family = [postmaster, *postmaster.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    _, alive = psutil.wait_procs(family, timeout=timeout_s)
    if alive:
        raise InfraError(f"server on port {port} survived SIGKILL: {[p.pid for p in alive]}")
    log.warning("Killed the server on port %s (it did not answer): %s", port, data_dir)
    return data_dir


def _refused(host: str, port: int) -> bool:
    """Whether ``host:port`` refuses a TCP connection (nothing listens there); a frozen
    server's kernel still accepts, so only a dead listener refuses."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def start_server(endpoint: PgEndpoint, data_dir: str) -> None:
    """Start a server stopped by :func:`stop_server` (idempotent)."""
    PgServer(home=Path(data_dir).parent, port=endpoint.port).start()


def stream_state(
    sessions: NodeSessions, source: PgEndpoint, standby_name: str
) -> ReplicationStatus:
    """State, lag in bytes and positions of a standby, from its primary's
    ``pg_stat_replication`` (``stopped``/``none`` when not connected; no lag in seconds)."""
    row = sessions.run(
        source,
        "SELECT r.state, r.sync_state,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, r.replay_lsn::text,"
        " pg_current_wal_lsn()::text, r.reply_time::text"
        " FROM (SELECT 1) AS one LEFT JOIN pg_stat_replication r ON r.application_name = %s"
        " ORDER BY r.state = 'streaming' DESC LIMIT 1",
        (standby_name,),
    )
    if not row or row[0] is None:
        return ReplicationStatus("stopped", "none", None, None, None, row[4] if row else None)
    state, sync_state, lag, replay, current, reply_time = row
    lag_bytes = None if lag is None else int(lag)
    return ReplicationStatus(str(state), str(sync_state), lag_bytes, None, replay, current,
                             reply_time=reply_time)


def write_through(router: PgEndpoint, check_id: str) -> tuple[str, int]:
    """Upsert a row keyed by ``check_id`` through ``router`` and read it back; return the
    address and port of the server that took it (``inet_server_addr()``, ``_port()``).

    Raises:
        InfraError: the write or the read-back failed.
    """
    try:
        with router.connect(timeout_s=2) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS shadowshift_cutover_check"
                " (workflow_id text PRIMARY KEY, checked_at timestamptz)"
            )
            row = conn.execute(
                "INSERT INTO shadowshift_cutover_check VALUES (%s, now())"
                " ON CONFLICT (workflow_id) DO UPDATE SET checked_at = now()"
                " RETURNING host(inet_server_addr()), inet_server_port()",
                (check_id,),
            ).fetchone()
            read_back = conn.execute(
                "SELECT count(*) FROM shadowshift_cutover_check WHERE workflow_id = %s",
                (check_id,),
            ).fetchone()
    except psycopg.Error as err:
        raise InfraError(f"write through the router failed: {str(err).strip()}") from err
    if not row or not read_back or read_back[0] != 1:
        raise InfraError(f"the write of {check_id} through the router was not read back")
    return str(row[0]), int(row[1])
