"""The local platform: PostgreSQL processes as instance and shadow, HAProxy as the router."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import psycopg
from psycopg import pq

from contracts.shadow import Capabilities, NodeFacts
from infra.errors import InfraError, InvalidRequestError, StackProgramError
from infra.local import archiving, fencing
from infra.local.haproxy import HAProxyManager
from infra.local.ports import port_free
from infra.local.postgres import (
    PgEndpoint,
    PgServer,
    pg_bin,
    prepare_dir,
    query_one,
    run_server_tool,
    server_os_user,
    set_synchronous_standby,
)
from infra.local.program import data_dir_props, shadow_program
from infra.local.rejoin import rejoin_as_standby
from infra.local.routed import RoutedPostgres
from infra.local.seed import SEED_POSITION_FILE, EarlySeed, drop_idle_slot
from infra.local.spec import LocalShadowSpec
from infra.pg_security import check_passfile, install_passfile
from infra.platform import Platform, ProgressCallback, ReplicationStatus, ShadowInfo
from infra.pulumi_engine import StackDriver

REWIND_ADVICE = (
    "set wal_log_hints = on (ALTER SYSTEM SET wal_log_hints = on, then restart the server) or "
    "initialise it with data checksums, so a former primary can be rewound instead of copied"
)
"""What to change on a server that cannot be rewound."""

log = logging.getLogger(__name__)

_SPACE_MARGIN = 1.2
_SPACE_FLOOR_BYTES = 64 * 1024 * 1024


class LocalPlatform(RoutedPostgres, Platform):
    """One protected PostgreSQL on this machine, its standby shadow and its HAProxy service."""

    name = "local"
    capabilities = Capabilities(rejoin=True, unprotect_when_degraded=True, sync_relax=True)

    def __init__(self, spec: LocalShadowSpec, driver: StackDriver | None) -> None:
        self.spec = spec
        self._stack_driver = driver
        self.haproxy = HAProxyManager(spec.haproxy_dir)
        self.sessions = fencing.NodeSessions()
        """Cached connections for the cutover's short round trips."""

    # -- shadow lifecycle ------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse, before anything is created, what retrying cannot fix.

        Raises:
            InvalidRequestError: unreachable primary, missing replication rights, busy port,
                unknown router service, too little disk, tier 3 without WAL archiving, a
                primary without TLS when replication requires it, an unusable passfile, or a
                replication login the primary refuses (wrong password, no TLS).
        """
        spec = self.spec
        try:
            with spec.primary.connect() as conn:
                wal_level, senders, archive_mode, db_bytes, ssl = conn.execute(
                    "SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int,"
                    " current_setting('archive_mode'),"
                    " (SELECT sum(pg_database_size(datname)) FROM pg_database)::bigint,"
                    " current_setting('ssl')"
                ).fetchone() or (None, 0, None, 0, "off")
                can_replicate = conn.execute(
                    "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = %s",
                    (spec.replication_user,),
                ).fetchone()
        except psycopg.OperationalError as err:
            raise InvalidRequestError(
                f"primary {spec.current_primary} is unreachable at "
                f"127.0.0.1:{spec.port_of(spec.current_primary)}: "
                f"{str(err).strip().splitlines()[0]}"
            ) from err
        if not can_replicate or not can_replicate[0]:
            raise InvalidRequestError(
                f"role {spec.replication_user!r} cannot replicate from the primary; run "
                f"ALTER ROLE {spec.replication_user} REPLICATION (or choose another role)"
            )
        if wal_level not in ("replica", "logical") or senders < 2:
            raise InvalidRequestError(
                "the primary needs wal_level=replica and max_wal_senders>=2 "
                f"(it has {wal_level}, {senders})"
            )
        if spec.tier == 3 and archive_mode not in ("on", "always"):
            raise InvalidRequestError(
                "tier 3 ships archived WAL: set archive_mode=on on the primary and restart it"
            )
        if spec.tier == 3:
            archiving.check_tools()
        if spec.replication_sslmode != "disable" and ssl != "on":
            raise InvalidRequestError(
                f"primary {spec.current_primary} does not offer TLS (ssl=off) and replication "
                f"requires it: give it a certificate from {spec.pki.folder} (docs/security.md) "
                "or set SHADOWSHIFT_PG_REPLICATION_SSLMODE=disable"
            )
        self._check_replication_login()  # every tier's copy is a replication connection
        standby = PgServer(home=spec.standby_home, port=spec.standby_port)
        if not standby.running() and not port_free(spec.standby_port):
            raise InvalidRequestError(f"shadow port {spec.standby_port} is already in use")
        if not self.haproxy.running() or spec.instance_id not in self.haproxy.services():
            raise InvalidRequestError(
                f"service {spec.instance_id} is not behind HAProxy; register it first"
            )
        needed = int((db_bytes or 0) * _SPACE_MARGIN) + _SPACE_FLOOR_BYTES
        free = shutil.disk_usage(_existing_ancestor(spec.standby_home)).free
        if not standby.initialised() and free < needed:
            raise InvalidRequestError(
                f"not enough disk for the shadow in {spec.standby_home}: "
                f"{free // 2**20} MiB free, {needed // 2**20} MiB needed"
            )

    def _check_replication_login(self) -> None:
        """Open (and close) a replication connection as the standby will, with the worker's
        passfile: a wrong password, a missing ``hostssl`` rule or an untrusted certificate is
        refused here, by name, instead of in a copy that retries forever."""
        spec = self.spec
        if spec.passfile is not None:
            check_passfile(spec.passfile, spec.replication_user)
        conninfo = spec.replication_conninfo(spec.standby_node, passfile=spec.passfile)
        login = pq.PGconn.connect(f"{conninfo} replication=true connect_timeout=5".encode())
        try:
            if login.status != pq.ConnStatus.OK:
                # libpq's own words (several lines; never the password, at most the
                # passfile's path).
                reason = " ".join(login.get_error_message().split()) or "refused"
                raise InvalidRequestError(
                    f"role {spec.replication_user!r} cannot open a replication connection to "
                    f"{spec.current_primary} (sslmode={spec.replication_sslmode}): {reason}"
                )
        finally:
            login.finish()

    def install_credentials(self, node: str) -> None:
        """What ``node``'s server needs to stream securely, in place before it is copied,
        started or rewound: its TLS certificate (issued once from the state dir's CA) and its
        copy of the replication role's passfile lines (rewritten each time, so a rotated
        password reaches it at the next provisioning or rejoin)."""
        spec = self.spec
        if spec.replication_sslmode != "disable":
            spec.pki.server_cert(node)
        if spec.passfile is not None:
            home = prepare_dir(spec.home_of(node), mode=0o755)
            install_passfile(spec.passfile, home / spec.passfile_copy(node).name,
                             spec.replication_user, server_os_user())

    def provision_shadow(self, on_progress: ProgressCallback | None = None) -> ShadowInfo:
        """Preflight, then ``pulumi up``; a failure retrying cannot fix leaves nothing behind."""
        self.preflight()
        self.install_credentials(self.spec.standby_node)
        # The copy starts now and overlaps Pulumi's start; the data resource adopts it.
        early = EarlySeed.start_if_needed(data_dir_props(self.spec), on_progress)
        try:
            result = self.driver.up(
                self.spec.stack_name, shadow_program(self.spec), on_progress=on_progress
            )
        except StackProgramError as err:
            if early:
                early.join()
            if "No space left on device" not in str(err):
                raise
            log.warning(
                "Shadow of %s ran out of disk. Removing what was created.", self.spec.instance_id
            )
            self.destroy_shadow(on_progress)
            raise InvalidRequestError(
                f"the shadow's disk filled up while copying {self.spec.instance_id}; "
                f"free space under {self.spec.standby_home} and retry"
            ) from err
        finally:
            if early:
                early.join()  # never leave a copy running behind the caller's back
        return ShadowInfo(self.spec.instance_id, self.spec.standby_node, result.outputs)

    @property
    def driver(self) -> StackDriver:
        """The Pulumi driver that changes this instance's stack.

        Raises:
            InvalidRequestError: the platform was built without one (a reader such as the
                fleet watcher, which never changes stacks).
        """
        if self._stack_driver is None:
            raise InvalidRequestError("this LocalPlatform has no Pulumi driver; it cannot "
                                      "change stacks")
        return self._stack_driver

    def destroy_shadow(self, on_progress: ProgressCallback | None = None) -> bool:
        """``pulumi destroy``: router entry, settings, standby, data directory, slot.

        What goes is the standby of the current roles (``spec.serving_node``), never the
        node that serves."""
        destroyed = self.driver.destroy(
            self.spec.stack_name, shadow_program(self.spec), on_progress=on_progress
        )
        shutil.rmtree(self.spec.standby_home, ignore_errors=True)
        # An early copy creates the slot before the stack records it; a worker killed in
        # between leaves a slot no stack knows, which would hold WAL forever.
        drop_idle_slot(self.spec.primary.conninfo(), self.spec.standby_slot)
        return destroyed

    # -- replication -----------------------------------------------------------------------

    def replication_status(self) -> ReplicationStatus:
        """State, sync state, lag and positions of the shadow, seen from both ends."""
        spec = self.spec
        with spec.primary.connect() as conn:
            current = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            row = conn.execute(
                "SELECT state, sync_state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),"
                " extract(epoch FROM replay_lag), replay_lsn::text,"
                " pg_wal_lsn_diff(sent_lsn, %s::pg_lsn)"
                " FROM pg_stat_replication WHERE application_name = %s",
                (self._seed_position(), spec.standby_node),
            ).fetchone()
            sync_names = conn.execute("SHOW synchronous_standby_names").fetchone()
        primary_lsn = current[0] if current else None
        degraded = spec.tier == 1 and not (sync_names and sync_names[0])
        if row is not None:
            state, sync_state, lag_bytes, lag_s, replay, sent = row
            return ReplicationStatus(
                state=state,
                sync_state=sync_state,
                lag_bytes=int(lag_bytes) if lag_bytes is not None else None,
                lag_seconds=float(lag_s) if lag_s is not None else None,
                replay_position=replay,
                primary_position=primary_lsn,
                bytes_shipped=int(sent) if sent is not None else None,
                degraded=degraded,
            )
        return self._status_from_standby(primary_lsn, degraded)

    def _seed_position(self) -> str:
        """WAL position the shadow's copy started from ('0/0' if it was not recorded)."""
        seed_file = self.spec.standby_home / SEED_POSITION_FILE
        try:
            return seed_file.read_text().strip() or "0/0"
        except OSError:
            return "0/0"

    def _status_from_standby(self, primary_lsn: str | None, degraded: bool) -> ReplicationStatus:
        spec = self.spec
        state = "archive" if spec.tier == 3 else "stopped"
        try:
            replay = query_one(spec.shadow, "SELECT pg_last_wal_replay_lsn()::text")
            lag = (
                query_one(
                    spec.primary,
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
                    (replay,),
                )
                if replay
                else None
            )
        except psycopg.OperationalError:
            return ReplicationStatus(
                "stopped", "none", None, None, None, primary_lsn, degraded=degraded
            )
        return ReplicationStatus(
            state=state,
            sync_state="none",
            lag_bytes=int(lag) if lag is not None else None,
            lag_seconds=None,
            replay_position=replay,
            primary_position=primary_lsn,
            bytes_shipped=_dir_bytes(spec.archive_dir) if spec.tier == 3 else None,
            degraded=degraded,
        )

    def relax_sync(self) -> None:
        """Tier 1 degraded mode: stop waiting for a lost shadow so writes go on (RPO > 0).

        The mark is written first: a relax of ours must always be known as ours, or it would
        never be undone."""
        self._relaxed_mark.parent.mkdir(parents=True, exist_ok=True)
        self._relaxed_mark.write_text("relaxed by the tier-1 supervisor\n")
        with self.spec.primary.connect() as conn:
            set_synchronous_standby(conn, None)

    def restore_sync(self) -> None:
        """Tier 1: require the shadow's acknowledgement again."""
        with self.spec.primary.connect() as conn:
            set_synchronous_standby(conn, self.spec.standby_node)
        self._relaxed_mark.unlink(missing_ok=True)

    def relaxed_by_supervisor(self) -> bool:
        """A mark next to the instance's folders, written by :meth:`relax_sync`, shared by
        every worker on this machine."""
        return self._relaxed_mark.exists()

    @property
    def _relaxed_mark(self) -> Path:
        return self.spec.shadow_home.parent / "sync-relaxed"

    # -- traffic and fencing (the cutover's side of the contract) ---------------------------

    def stop_node(self, node: str) -> str | None:
        """Fence and stop the node's server if it answers; its data directory, else ``None``."""
        return fencing.stop_server(self.sessions, self._endpoint(node))

    def start_node(self, node: str, token: str) -> None:
        """Start a node :meth:`stop_node` stopped (``token`` is its data directory)."""
        fencing.start_server(self._endpoint(node), token)

    def nodes(self) -> tuple[str, str]:
        """``(primary node, shadow node)`` as provisioned."""
        return self.spec.primary_node, self.spec.shadow_node

    # -- recovery of a former primary -------------------------------------------------------

    def inspect_node(self, node: str) -> NodeFacts:
        """Its data directory (asked of the server, else the known home) and whether
        ``pg_rewind`` could rewind it (``wal_log_hints`` or data checksums)."""
        try:
            row = self.sessions.run(
                self._endpoint(node),
                "SELECT current_setting('data_directory'), current_setting('wal_log_hints'),"
                " current_setting('data_checksums')",
            )
        except psycopg.Error:
            known = self.spec.home_of(node)
            return NodeFacts(node, False, str(known) if (known / "data").exists() else "", None)
        data_dir, hints, checksums = row if row else ("", "off", "off")
        if Path(data_dir).name != "data":
            # Local servers are managed as <home>/data (PgServer); another layout is not
            # guessed at: such a node is re-seeded in a home of ours instead.
            return NodeFacts(node, True, "", False,
                             f"{node}: its data directory {data_dir} is not <home>/data")
        rewindable = "on" in (hints, checksums)
        advice = "" if rewindable else f"{node}: {REWIND_ADVICE}"
        return NodeFacts(node, True, str(Path(data_dir).parent), rewindable, advice)

    def rejoin(self, former: str) -> str:
        """``pg_rewind`` the former primary, make it stream (``infra.local.rejoin``), then
        record the roles in the stack (``pulumi up`` in place: nothing is copied).

        Idempotent: a former primary that already streams from the new primary is only
        recorded. Refuses, for good, a former primary whose data directory is gone or
        damaged, or that can be rewound by neither ``wal_log_hints`` nor checksums."""
        self._require_standby_role(former)
        data_dir = self.spec.home_of(former) / "data"
        streaming = self.replication_between(self.spec.current_primary, former).state
        if streaming != "streaming":
            _require_rewindable(former, data_dir)
        self.install_credentials(former)
        done = rejoin_as_standby(self, former, str(data_dir))
        self.provision_shadow()  # records the roles in the stack, in place
        return done

    def retire(self, former: str) -> bool:
        """Record the roles in the stack, then ``pulumi destroy`` the former primary's side
        (its process, data directory, slot, router entry); the serving node is never
        touched: the stack describes the standby side of the current roles."""
        self._require_standby_role(former)
        existed = self.driver.exists(self.spec.stack_name)
        if existed:
            self.driver.up(self.spec.stack_name, shadow_program(self.spec))
        self.destroy_shadow()
        return existed

    def _require_standby_role(self, former: str) -> None:
        """Refuse a request whose roles do not make ``former`` the standby."""
        if self.spec.standby_node != former:
            raise InvalidRequestError(f"{former} is not the standby of the roles given "
                                      f"(serving_node {self.spec.current_primary})")

    def probe_address(self, node: str) -> tuple[str, int] | None:
        """Loopback and the node's port."""
        endpoint = self._endpoint(node)
        return endpoint.host, endpoint.port

    def close(self) -> None:
        """Close the cached sessions."""
        self.sessions.close()

    def endpoint(self, node: str) -> PgEndpoint:
        """Superuser endpoint of ``node`` (either the original primary or the shadow)."""
        return self._endpoint(node)

    # -- helpers ---------------------------------------------------------------------------

    @property
    def service(self) -> str:
        """HAProxy service of the instance: its id."""
        return self.spec.instance_id

    @property
    def router_endpoint(self) -> PgEndpoint:
        """HAProxy's frontend on this machine."""
        return PgEndpoint(port=self.spec.router_port)

    def _endpoint(self, node: str) -> PgEndpoint:
        return self.spec.endpoint_of(node)  # by name: roles swap, ports stay


def _require_rewindable(node: str, data_dir: Path) -> None:
    """Read the cluster's control file (works whether or not the server runs)."""
    try:
        control = run_server_tool([pg_bin("pg_controldata"), "-D", str(data_dir)])
    except InfraError as err:
        raise InvalidRequestError(
            f"the data directory of {node} ({data_dir}) is missing or damaged, so it cannot "
            f"rejoin: {str(err).splitlines()[0]}"
        ) from err
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in control.splitlines())
    )
    hints = fields.get("wal_log_hints setting") == "on"
    checksums = fields.get("Data page checksum version", "0") != "0"
    if not (hints or checksums):
        raise InvalidRequestError(f"{node} cannot be rewound: {REWIND_ADVICE}")


def _existing_ancestor(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*") if f.is_file()) if path.exists() else 0
