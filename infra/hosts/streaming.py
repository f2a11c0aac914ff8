"""A Pulumi dynamic resource that waits until a standby streams from its primary.

On the hosts platform the standby's copy runs on its own host (its agent's ``seed_standby``)
while the control worker's ``pulumi up`` builds the rest (router service and entry, slot). The
tier's settings on the primary must wait for the standby to stream (tier 1 would otherwise
make every commit wait for a standby still copying): this resource is what they depend on, so
one ``up`` runs alongside the copy and finishes right after it, instead of one ``up`` before
the copy and another after it (measured on a loaded 2-core machine: 4.8 s and 4.2 s around a
2.6 s copy).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pulumi
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

POLL_S = 0.1
"""Time between two looks at ``pg_stat_replication``."""
WAIT_S = 50 * 60.0
"""Longest wait: inside the provisioning activity's hour (a retry of the activity waits
again while the copy goes on)."""
NO_COPY_S = 30.0
"""How long the primary may see neither the copy (a ``pg_basebackup`` session) nor the
standby before the wait gives up: a copy that failed must not hold the ``up`` for the rest of
:data:`WAIT_S` (the agent takes its task within seconds; a copy reconnects in less)."""
_SEEN = """
SELECT coalesce(bool_or(application_name = %(standby)s AND state = 'streaming'
                        AND replay_lsn IS NOT NULL), false)
       AND NOT coalesce(bool_or(application_name = %(standby)s AND state = 'backup'), false),
       count(*) FILTER (WHERE application_name IN (%(standby)s, 'pg_basebackup'))
FROM pg_stat_replication"""
"""(streams, connected): the copy's own sessions carry the standby's name too (the agent's
``pg_basebackup`` uses it), so a stream counts only with a replay position, which a standby
reports and ``pg_basebackup``'s WAL stream never does, and once no base backup is running."""


def wait_until_streaming(conninfo: str, standby: str, timeout_s: float = WAIT_S,
                         no_copy_s: float = NO_COPY_S) -> float:
    """Seconds until ``standby`` streams from the primary at ``conninfo``.

    Raises:
        TimeoutError: not within ``timeout_s``, or neither the copy nor the standby was
            connected to the primary for ``no_copy_s`` (the message names the standby).
    """
    started = last_seen = time.monotonic()
    while True:
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                while True:
                    streams, connected = conn.execute(_SEEN, {"standby": standby}).fetchone() \
                        or (False, 0)
                    now = time.monotonic()
                    if streams:
                        return now - started
                    last_seen = now if connected else last_seen
                    _give_up_if(standby, now - started, timeout_s, now - last_seen, no_copy_s)
                    time.sleep(POLL_S)
        except psycopg.OperationalError:
            now = time.monotonic()  # a restart of the primary: ask again
            _give_up_if(standby, now - started, timeout_s, now - last_seen, no_copy_s)
            time.sleep(POLL_S)


def _give_up_if(standby: str, waited_s: float, timeout_s: float, unseen_s: float,
                no_copy_s: float) -> None:
    if waited_s >= timeout_s:
        raise TimeoutError(f"{standby} did not stream within {timeout_s:.0f} s")
    if unseen_s >= no_copy_s:
        raise TimeoutError(f"no copy of {standby} has been connected to the primary for "
                           f"{unseen_s:.0f} s: its host's agent is not copying it")


class StandbyStreamsProvider(ResourceProvider):
    """Created (or updated, after a change of roles) once the standby streams."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Wait for the stream."""
        waited = wait_until_streaming(props["conninfo"], props["standby"])
        return CreateResult(id_=props["standby"], outs={**props, "out_waited_s": waited})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Another primary or standby: wait again (in place)."""
        changed = [k for k in news if not k.startswith("out_") and olds.get(k) != news[k]]
        return DiffResult(changes=bool(changed), replaces=[])

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Wait for the new stream."""
        waited = wait_until_streaming(news["conninfo"], news["standby"])
        return UpdateResult(outs={**news, "out_waited_s": waited})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """A wait has no state to read back."""
        return ReadResult(id_=id_, outs=props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Nothing to remove."""
        return None


class StandbyStreams(Resource):
    """See :class:`StandbyStreamsProvider`."""

    def __init__(self, name: str, props: dict[str, Any],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(StandbyStreamsProvider(), name, props, opts)
