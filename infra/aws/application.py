"""The application on the EC2 instances, which EC2 cannot see into: PostgreSQL streaming.

Tiers 1-2 replicate at application level, so a cutover on AWS needs the database's own
answers: is the shadow streaming and how far behind, can the old primary still acknowledge
writes, what is its final position, has the shadow replayed it, promote it. EC2 only knows
whether the machine runs; moto (our test double for AWS) runs no software at all.

:class:`PostgresApplication` answers them with the same code the local platform uses
(:mod:`infra.local.fencing`: read-only fence with sessions ended, flushed and replayed
positions, promotion polled on a cached session), pointed at each instance's address.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import psycopg

from infra.aws.spec import PostgresAppSpec
from infra.errors import InfraError
from infra.local import fencing
from infra.local.postgres import PgEndpoint, set_synchronous_standby
from infra.platform import Health, ReplicationStatus


class NodeApplication(Protocol):
    """What the AWS platform asks the application on a node (``address`` is ``host[:port]``).

    Every method is idempotent. Methods that need the node raise ``InfraError`` (retryable)
    when it cannot be reached; :meth:`health` reports that instead.
    """

    def health(self, address: str) -> Health:
        """Whether the node answers, is a standby, and would accept a write now."""

    def checkpoint(self, address: str) -> None:
        """Force a checkpoint on the node (before a cutover's window, never inside it)."""

    def fence_writes(self, address: str) -> None:
        """Make the node refuse new writes and end every client session (confirmed)."""

    def unfence_writes(self, address: str) -> None:
        """Undo :meth:`fence_writes`."""

    def promote(self, address: str) -> None:
        """Make the standby at ``address`` writable and wait until it is (no-op on a primary)."""

    def final_position(self, address: str) -> str:
        """A fenced primary's durable write position; a standby's replayed one."""

    def replay_gap(self, address: str, position: str | None) -> int:
        """Bytes the standby still has to replay to reach ``position`` (default: received)."""

    def replication(self, source_address: str, standby_name: str) -> ReplicationStatus:
        """Standby ``standby_name`` as the primary at ``source_address`` sees it."""

    def set_synchronous(self, address: str, standby_name: str | None) -> None:
        """Make the primary's commits wait for ``standby_name`` (``None``: for nobody)."""

    def write_check(self, address: str, check_id: str) -> None:
        """Upsert a row keyed by ``check_id`` on the node and read it back."""

    def close(self) -> None:
        """Release cached connections."""


class PostgresApplication:
    """PostgreSQL on both instances, reached at ``host[:port]`` with the spec's role."""

    def __init__(self, spec: PostgresAppSpec) -> None:
        self.spec = spec
        # One session cache per host: NodeSessions keys its connections by port, and on AWS
        # every instance listens on the same port.
        self._sessions: dict[str, fencing.NodeSessions] = {}

    def endpoint(self, address: str) -> PgEndpoint:
        """The superuser endpoint at ``address`` (``host`` or ``host:port``)."""
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
        return PgEndpoint(
            host=host or address,
            port=int(port) if port else self.spec.port,
            user=self.spec.user,
            dbname=self.spec.dbname,
        )

    def health(self, address: str) -> Health:
        """Ask the node on its cached session; unreachable is an answer, not an error."""
        return fencing.probe_server(*self._at(address))

    def checkpoint(self, address: str) -> None:
        """``CHECKPOINT``: run by the cutover's preflight (``prepare_cutover``), so its I/O
        burst is over before the fence and it is a recent checkpoint both sides share."""
        with _reached(address):
            sessions, endpoint = self._at(address)
            sessions.run(endpoint, "CHECKPOINT")

    def fence_writes(self, address: str) -> None:
        """Read-only, every client session ended (no checkpoint here: it would sit inside
        the write blackout; preflight ran one)."""
        with _reached(address):
            fencing.fence_server(*self._at(address))

    def unfence_writes(self, address: str) -> None:
        """Writable again."""
        with _reached(address):
            fencing.set_read_only(*self._at(address), False)

    def promote(self, address: str) -> None:
        """``pg_promote`` and wait on the cached session until it is out of recovery."""
        with _reached(address):
            fencing.promote_server(*self._at(address))

    def final_position(self, address: str) -> str:
        """Flushed position of a primary, replayed position of a standby."""
        with _reached(address):
            return fencing.flushed_position(*self._at(address))

    def replay_gap(self, address: str, position: str | None) -> int:
        """WAL bytes the standby has yet to replay to reach ``position``."""
        with _reached(address):
            return fencing.replay_gap(*self._at(address), position)

    def replication(self, source_address: str, standby_name: str) -> ReplicationStatus:
        """From the primary's ``pg_stat_replication`` (``stopped`` when not connected)."""
        with _reached(source_address):
            return fencing.stream_state(*self._at(source_address), standby_name)

    def set_synchronous(self, address: str, standby_name: str | None) -> None:
        """``synchronous_standby_names`` on the primary, reloaded."""
        with _reached(address):
            sessions, endpoint = self._at(address)
            set_synchronous_standby(sessions.connection(endpoint), standby_name)

    def write_check(self, address: str, check_id: str) -> None:
        """The same upsert-and-read-back the local platform sends through HAProxy."""
        fencing.write_through(self.endpoint(address), check_id)

    def close(self) -> None:
        """Close every cached session."""
        for sessions in self._sessions.values():
            sessions.close()
        self._sessions.clear()

    def _at(self, address: str) -> tuple[fencing.NodeSessions, PgEndpoint]:
        endpoint = self.endpoint(address)
        return self._sessions.setdefault(endpoint.host, fencing.NodeSessions()), endpoint


@contextmanager
def _reached(address: str) -> Iterator[None]:
    """Turn "cannot reach the database" into a retryable ``InfraError`` naming the address."""
    try:
        yield
    except psycopg.OperationalError as err:
        first = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise InfraError(f"PostgreSQL at {address} is unreachable: {first}") from err
