"""A former primary rejoins as the standby of the node that replaced it (``pg_rewind``).

After a cutover the former primary is fenced and may hold a little WAL the new primary
never saw (checkpoints, its shutdown record). ``pg_rewind`` winds it back to the fork point
and copies what changed since, so the data directory is reused instead of copied again. It
needs ``wal_log_hints = on`` (or data checksums) on the former primary; without them it
refuses, and the caller must re-seed the standby instead (``destroy_shadow`` + provision).
It also reads the former primary's WAL back to the last checkpoint both servers share: the
planned fence takes a checkpoint first so that one is recent, and ``wal_keep_size`` on the
primary keeps the segments in case the shutdown checkpoint recycles them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

from contracts.shadow import ReplicationStatus
from infra.errors import InfraError, InvalidRequestError
from infra.local.fencing import NodeSessions
from infra.local.haproxy import HAProxyManager
from infra.local.postgres import (
    PgEndpoint,
    PgServer,
    alter_system,
    pg_bin,
    run_server_tool,
)
from infra.local.spec import LocalShadowSpec

log = logging.getLogger(__name__)


class LocalPair(Protocol):
    """What a rejoin needs of the local platform (``LocalPlatform`` provides it)."""

    spec: LocalShadowSpec
    sessions: NodeSessions
    haproxy: HAProxyManager

    def endpoint(self, node: str) -> PgEndpoint: ...

    def replication_between(self, source: str, target: str) -> ReplicationStatus: ...

    def get_weights(self) -> dict[str, int]: ...


def standby_slot(platform: LocalPair, standby: str) -> str:
    """Replication slot on the primary for ``standby`` (the shadow keeps its provisioned one)."""
    return platform.spec.slot_for(standby)


def rejoin_as_standby(platform: LocalPair, former: str, data_dir: str | None = None) -> str:
    """Make ``former`` stream from the other node (the current primary); idempotent.

    Returns what was done, in a few words.

    Raises:
        InvalidRequestError: the former primary still serves traffic, or its data directory
            is unknown while it is down, or pg_rewind cannot work on it.
    """
    spec = platform.spec
    primary = spec.other_node(former)
    former_ep, primary_ep = platform.endpoint(former), platform.endpoint(primary)
    status = platform.replication_between(primary, former)
    if status.state == "streaming":
        _require_sync(platform, primary, former)
        return "already streaming"
    if platform.get_weights().get(former, 0) > 0:
        raise InvalidRequestError(f"{former} still receives traffic; it cannot become a standby")
    if data_dir is None:
        try:
            row = platform.sessions.run(former_ep, "SHOW data_directory")
        except Exception as err:
            raise InvalidRequestError(
                f"{former} is down and its data directory was not given"
            ) from err
        data_dir = str(row[0])
    platform.sessions.drop(former_ep)
    server = PgServer(home=Path(data_dir).parent, port=former_ep.port)
    server.stop(mode="fast")
    slot = standby_slot(platform, former)
    with primary_ep.connect() as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if not exists:
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
        # pg_rewind reads the source's timeline from pg_control, which a promoted server
        # updates only at its first checkpoint: without one it says "no rewind required".
        conn.execute("CHECKPOINT")
    started = time.monotonic()
    try:
        run_server_tool(
            [pg_bin("pg_rewind"), "-D", data_dir, "--source-server", primary_ep.conninfo()]
        )
    except InfraError as err:
        if "wal_log_hints" in str(err):
            raise InvalidRequestError(
                f"{former} cannot be rewound (needs wal_log_hints=on or checksums): re-seed it"
            ) from err
        raise
    rewind_s = time.monotonic() - started
    _write_standby_config(server, platform, former, primary, slot)
    server.start()
    _wait_streaming(platform, primary, former, timeout_s=60)
    _require_sync(platform, primary, former)
    platform.haproxy.set_weight(spec.instance_id, former, 0)
    platform.haproxy.set_enabled(spec.instance_id, former, True)
    log.info("%s rejoined as the standby of %s (rewind %.2fs).", former, primary, rewind_s)
    return f"rewound in {rewind_s:.2f}s"


def _write_standby_config(
    server: PgServer, platform: LocalPair, standby: str, primary: str, slot: str
) -> None:
    """Replace the (rewound) auto.conf: it came from the primary, with the primary's port."""
    # The replication role and the same string the shadow program writes, so a later stack
    # update that rewrites these settings changes nothing (no walreceiver restart).
    conninfo = platform.spec.replication_conninfo(standby) + f" application_name={standby}"
    server.write_standby_config({
        "recovery_target_timeline": "'latest'",
        "primary_conninfo": "'" + conninfo.replace("'", "''") + "'",
        "primary_slot_name": f"'{slot}'",
        **platform.spec.server_settings(standby),
    })


def _wait_streaming(platform: LocalPair, primary: str, standby: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while platform.replication_between(primary, standby).state != "streaming":
        if time.monotonic() > deadline:
            raise InfraError(f"{standby} did not stream from {primary} within {timeout_s}s")
        time.sleep(0.05)


def _require_sync(platform: LocalPair, primary: str, standby: str) -> None:
    """Tier 1: commits on the new primary wait for the rejoined standby again."""
    if platform.spec.tier != 1:
        return
    names = f'FIRST 1 ("{standby}")'
    with platform.endpoint(primary).connect() as conn:
        current = conn.execute("SHOW synchronous_standby_names").fetchone()
        if current and current[0] == names:
            return
        alter_system(conn, "synchronous_standby_names", names)
        alter_system(conn, "synchronous_commit", "on")
        conn.execute("SELECT pg_reload_conf()")
