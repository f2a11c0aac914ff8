"""Queries with a hard deadline, for the agent's probes and its lease evidence.

libpq's ``connect_timeout`` has a floor of 2 seconds and covers only the connection. A server
whose processes are stopped (SIGSTOP, a frozen cgroup) still accepts the connection, in the
kernel's listen backlog, and then never answers. The failure detector's vote must come back in
well under a second either way, so :class:`DeadlineSession` drives libpq's non-blocking API
(``PQconnectStart``/``PQconnectPoll``, ``PQsendQuery``) with ``select`` against one deadline
and closes the socket when the deadline passes: no thread is left behind waiting on a hung
server.
"""

from __future__ import annotations

import math
import select
import time

import psycopg
from psycopg import pq


class QueryError(Exception):
    """The server refused the connection or the query; the message says why."""


class QueryTimeout(QueryError):
    """No answer before the deadline (a hung, frozen or overloaded server)."""


Row = tuple[str | None, ...]
"""One result row in text form (``None`` for SQL NULL)."""


class DeadlineSession:
    """One libpq connection, opened on first use and reused, every call bounded by a deadline.

    Not thread-safe: one session per thread. A call that fails or times out closes the
    connection; the next call opens a fresh one.
    """

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo.encode()
        self._conn: pq.abc.PGconn | None = None

    def query(self, statement: str, timeout_s: float) -> list[Row]:
        """Run ``statement`` (one statement, text results) within ``timeout_s`` seconds.

        Raises:
            QueryTimeout: the deadline passed (connecting or waiting for the result).
            QueryError: the connection or the statement failed.
        """
        deadline = time.monotonic() + timeout_s
        try:
            if self._conn is None or self._conn.status != pq.ConnStatus.OK:
                self.close()
                self._conn = _connect(self._conninfo, deadline)
            return _run(self._conn, statement.encode(), deadline)
        except psycopg.Error as err:  # libpq's calls raise these (a server gone mid-query)
            self.close()
            raise QueryError(str(err).strip()) from err
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection, if any (idempotent)."""
        if self._conn is not None:
            self._conn.finish()
            self._conn = None


def quick_query(conninfo: str, statement: str, timeout_s: float) -> list[Row]:
    """``statement``'s rows on a fresh connection, all within ``timeout_s`` (see
    :meth:`DeadlineSession.query` for what it raises)."""
    session = DeadlineSession(conninfo)
    try:
        return session.query(statement, timeout_s)
    finally:
        session.close()


def _connect(conninfo: bytes, deadline: float) -> pq.abc.PGconn:
    conn = pq.PGconn.connect_start(conninfo)
    if conn.status == pq.ConnStatus.BAD:
        message = _message(conn)
        conn.finish()
        raise QueryError(message)
    try:
        # libpq's protocol: act as if the last poll said "writing", then wait for what each
        # poll asks for. The socket can change between polls (several addresses), so re-read it.
        state = int(pq.PollingStatus.WRITING)
        while state != pq.PollingStatus.OK:
            if state == pq.PollingStatus.FAILED:
                raise QueryError(_message(conn))
            _wait(conn.socket, writing=state == pq.PollingStatus.WRITING, deadline=deadline)
            state = conn.connect_poll()
        conn.nonblocking = 1
    except BaseException:
        conn.finish()
        raise
    return conn


def _run(conn: pq.abc.PGconn, statement: bytes, deadline: float) -> list[Row]:
    conn.send_query(statement)
    while conn.flush():  # 1: more to send (the kernel buffer was full)
        _wait(conn.socket, writing=True, deadline=deadline)
    rows: list[Row] = []
    error: str | None = None
    while True:
        conn.consume_input()
        while not conn.is_busy():
            result = conn.get_result()
            if result is None:
                if error is not None:
                    raise QueryError(error)
                return rows
            if result.status == pq.ExecStatus.TUPLES_OK:
                rows.extend(_rows(result))
            elif result.status != pq.ExecStatus.COMMAND_OK:
                error = result.error_message.decode(errors="replace").strip()
        _wait(conn.socket, writing=False, deadline=deadline)


def _rows(result: pq.abc.PGresult) -> list[Row]:
    found: list[Row] = []
    for row in range(result.ntuples):
        values = (result.get_value(row, column) for column in range(result.nfields))
        found.append(tuple(None if v is None else bytes(v).decode() for v in values))
    return found


def _wait(fileno: int, *, writing: bool, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise QueryTimeout("no answer before the deadline")
    # poll, not select: a busy agent may hold descriptors above select's 1024 limit.
    poller = select.poll()
    poller.register(fileno, select.POLLOUT if writing else select.POLLIN)
    if not poller.poll(math.ceil(remaining * 1000)):
        raise QueryTimeout("no answer before the deadline")


def _message(conn: pq.abc.PGconn) -> str:
    return conn.error_message.decode(errors="replace").strip() or "connection failed"
