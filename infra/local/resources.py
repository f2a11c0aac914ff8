"""Pulumi dynamic providers for a local PostgreSQL shadow.

Each provider's ``create`` converges: it inspects what a crashed earlier attempt left and
finishes the job instead of failing on it, and ``read`` reports the world as it is, so
``refresh`` + ``up`` repairs drift (a stopped standby, a HAProxy restart).

The providers run in Pulumi's dynamic-provider host process, which unpickles them by
reference to this module; keep them free of state beyond their inputs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
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

from infra.local import archiving
from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.postgres import PgServer, alter_system
from infra.local.seed import (
    ensure_slot,
    is_standby_data,
    seed_data_dir,
    seed_seconds,
    write_standby_settings,
)


def _connect(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)


def _roles_moved(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """Whether a cutover swapped the pair's roles since the resource was last written."""
    return olds.get("roles") != news.get("roles")


_TLS_PARAMS = ("sslmode", "sslrootcert")
"""Connection parameters that say how, not where: a change of them alone (a worker given
``SHADOWSHIFT_PG_TLS_CA`` since the stack was written) updates a resource in place."""


def same_server(old: str | None, new: str) -> bool:
    """Whether two conninfos reach the same server as the same role (TLS aside)."""
    if old is None:
        return False

    def where(conninfo: str) -> dict[str, str]:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
        return {k: str(v) for k, v in params.items() if k not in _TLS_PARAMS}

    return where(old) == where(new)


def _only_tls_changed(olds: dict[str, Any], news: dict[str, Any], changed: list[str]) -> bool:
    """Whether every changed input is a conninfo that changed only in its TLS parameters."""
    return bool(changed) and all(
        "conninfo" in key and isinstance(news[key], str) and same_server(olds.get(key), news[key])
        for key in changed)


class _Provider(ResourceProvider):
    """Every input change replaces the resource: these are small, idempotent objects.

    Except a change of roles (a cutover happened): replacing would delete the old
    description's object, which now belongs to the serving primary, so it is an in-place
    :meth:`update` that follows the new roles instead. A conninfo that changed only in its TLS
    parameters is an in-place update too: it reaches the same object.
    """

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Replace on any input change; outputs (``out_*``) do not count; roles and TLS-only
        conninfo changes update."""
        changed = [k for k, v in news.items() if not k.startswith("out_") and olds.get(k) != v]
        in_place = _roles_moved(olds, news) or _only_tls_changed(olds, news, changed)
        replaces = [] if in_place else changed
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)


# -- replication slot ----------------------------------------------------------------------


class ReplicationSlotProvider(_Provider):
    """A physical replication slot on the primary, so it keeps WAL the shadow still needs."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create the slot unless it exists (an early copy may have made it already)."""
        ensure_slot(props["conninfo"], props["slot"])
        return CreateResult(id_=props["slot"], outs=props)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Roles moved: the slot lives on the new primary; the old one holds no WAL for a node
        that is not its standby any more (dropped if that server answers and nobody uses it).
        Only TLS changed: the same slot, nothing to drop."""
        self.create(news)
        same_slot = olds.get("slot") == news["slot"] and same_server(olds.get("conninfo"),
                                                                      news["conninfo"])
        if not same_slot:
            try:
                with _connect(olds["conninfo"]) as conn:
                    conn.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                        " WHERE slot_name = %s AND NOT active",
                        (olds["slot"],),
                    )
            except psycopg.Error:
                pass  # the former primary is down or read-only: its slot goes with it
        return UpdateResult(outs=news)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The slot as the primary sees it."""
        slot = props.get("slot", id_)  # after a role update the id names the first slot
        with _connect(props["conninfo"]) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
        return ReadResult(id_=id_ if row else None, outs=props if row else {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Drop the slot once no standby uses it (the standby is stopped before this runs)."""
        slot = props.get("slot", id_)
        deadline = time.monotonic() + 30
        with _connect(props["conninfo"]) as conn:
            while True:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                ).fetchone()
                if row is None:
                    return
                if not row[0] or time.monotonic() > deadline:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    return
                time.sleep(0.2)


class ReplicationSlot(Resource):
    """See :class:`ReplicationSlotProvider`."""

    def __init__(
        self,
        name: str,
        *,
        conninfo: str,
        slot: str,
        roles: str = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            ReplicationSlotProvider(),
            name,
            {"conninfo": conninfo, "slot": slot, "roles": roles},
            opts,
        )


# -- seeded data directory -----------------------------------------------------------------


class ShadowDataDirProvider(_Provider):
    """The shadow's data directory, seeded by a full copy (``pg_basebackup``).

    A tier change is an in-place update (new standby settings, then a reload), not a re-copy:
    only a new home, port or primary replaces the data directory. A change of roles (after a
    cutover) is in place too: the resource now describes the former primary's data directory,
    which the recovery rewinds (or retires with ``destroy`` and copies afresh).
    """

    _REPLACING = ("home", "port", "replication_conninfo")

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Replace for a new location or primary; update in place for anything else."""
        changed = [k for k, v in news.items() if not k.startswith("out_") and olds.get(k) != v]
        replaces = [] if _roles_moved(olds, news) else [k for k in changed if k in self._REPLACING]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Rewrite the standby settings for the new tier and make a running standby reload.

        After a role change the settings are written only into a data directory that is a
        standby's already (rewound): a former primary that is not one yet is only recorded,
        never turned into a standby behind the recovery's back."""
        server = PgServer(home=Path(news["home"]), port=int(news["port"]))
        outs = {**news, "out_data_dir": str(server.data_dir),
                "out_seed_seconds": olds.get("out_seed_seconds")}
        if _roles_moved(olds, news) and not is_standby_data(server):
            return UpdateResult(outs=outs)
        write_standby_settings(server, news)
        if server.running():
            server.reload()
        return UpdateResult(outs=outs)

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Copy the primary (compressed on the server side) and write the standby settings.

        An early copy (:class:`infra.local.seed.EarlySeed`) may be under way or done: this
        waits for it and adopts it, or copies itself when there is none.
        """
        home = Path(props["home"])
        server = PgServer(home=home, port=int(props["port"]))
        started = time.monotonic()
        seed_data_dir(props)
        write_standby_settings(server, props)
        outs = {
            **props,
            "out_data_dir": str(server.data_dir),
            "out_seed_seconds": seed_seconds(home) or round(time.monotonic() - started, 3),
        }
        return CreateResult(id_=str(server.data_dir), outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Present while the data directory holds a cluster."""
        data_dir = Path(props["home"]) / "data" if props.get("home") else Path(id_)
        exists = (data_dir / "PG_VERSION").exists()
        return ReadResult(id_=id_ if exists else None, outs=props if exists else {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Remove the data directory and the shadow's home, stopping a server still running
        from it: a worker killed after the standby started but before Pulumi recorded the
        standby resource leaves a process the stack does not know."""
        PgServer(home=Path(props["home"]), port=int(props["port"])).stop(mode="immediate")
        shutil.rmtree(props["home"], ignore_errors=True)


class ShadowDataDir(Resource):
    """See :class:`ShadowDataDirProvider`."""

    out_data_dir: pulumi.Output[str]
    out_seed_seconds: pulumi.Output[float]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            ShadowDataDirProvider(),
            name,
            {**props, "out_data_dir": None, "out_seed_seconds": None},
            opts,
        )


# -- standby process -----------------------------------------------------------------------


class StandbyProcessProvider(_Provider):
    """The standby server process, started with ``pg_ctl`` so it outlives this provider."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Start the standby (a running one is left alone)."""
        server = PgServer(home=Path(props["home"]), port=int(props["port"]))
        server.start()
        return CreateResult(id_=f"{props['home']}:{props['port']}", outs=props)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Roles moved: the process is now the former primary's. Started only once its data
        directory is a standby's (a former primary never starts writable from here); the
        node that serves now is never stopped."""
        server = PgServer(home=Path(news["home"]), port=int(news["port"]))
        if is_standby_data(server):
            server.start()
        return UpdateResult(outs=news)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Present while the postmaster runs."""
        server = PgServer(home=Path(props["home"]), port=int(props["port"]))
        running = server.running()
        return ReadResult(id_=id_ if running else None, outs=props if running else {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Stop the standby (fast shutdown)."""
        PgServer(home=Path(props["home"]), port=int(props["port"])).stop()


class StandbyProcess(Resource):
    """See :class:`StandbyProcessProvider`."""

    def __init__(
        self,
        name: str,
        *,
        home: str,
        port: int,
        data_dir: pulumi.Input[str],
        roles: str = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"home": home, "port": port, "data_dir": data_dir, "roles": roles}
        super().__init__(StandbyProcessProvider(), name, props, opts)


# -- replication settings on the primary ---------------------------------------------------


class PrimarySettingsProvider(_Provider):
    """Tier settings on the primary: WAL compression, synchronous standby, archiving."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Apply the tier once the standby streams (tier 1 would block writes before)."""
        previous = _apply_tier(props, wait_s=120)
        outs = {**props, "out_previous_archiving": previous}
        return CreateResult(id_=f"{props['standby_name']}-settings", outs=outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Roles moved: the settings belong on the new primary, applied now if the former
        primary already streams to it (rewound), else left to the recovery (tier 1 must not
        make commits wait for a standby that is not there)."""
        previous = _apply_tier(news, wait_s=0)
        kept = olds.get("out_previous_archiving") or previous
        return UpdateResult(outs={**news, "out_previous_archiving": kept})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Always present: settings cannot vanish without an operator."""
        return ReadResult(id_=id_, outs=props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Stop waiting for this standby; give the primary its own archiving settings back."""
        with _connect(props["conninfo"]) as conn:
            alter_system(conn, "synchronous_standby_names", None)
            if int(props["tier"]) == 3:
                previous = props.get("out_previous_archiving")
                archiving.disable(conn, Path(props["archive_dir"]), previous)
            conn.execute("SELECT pg_reload_conf()")
        if int(props["tier"]) == 3:
            shutil.rmtree(props["archive_dir"], ignore_errors=True)


def _apply_tier(props: dict[str, Any], *, wait_s: float) -> dict[str, Any] | None:
    """Tier settings on the primary; tier 1's synchronous standby only once it streams
    (``wait_s`` 0: if it does not stream now, leave the synchronous setting alone).

    Returns the primary's archiving settings from before tier 3 (``None`` for tiers 1-2).
    """
    tier = int(props["tier"])
    previous = None
    with _connect(props["conninfo"]) as conn:
        alter_system(conn, "wal_compression", "lz4")
        if tier == 1:
            if wait_s > 0:
                _wait_streaming(conn, props["standby_name"], timeout_s=wait_s)
            if wait_s > 0 or _streams(conn, props["standby_name"]):
                names = f'FIRST 1 ("{props["standby_name"]}")'
                alter_system(conn, "synchronous_standby_names", names)
                alter_system(conn, "synchronous_commit", "on")
        else:
            alter_system(conn, "synchronous_standby_names", None)
        if tier == 3:
            interval_s = int(props["archive_interval_s"])
            previous = archiving.enable(conn, Path(props["archive_dir"]), interval_s)
        conn.execute("SELECT pg_reload_conf()")
    return previous


def _streams(conn: psycopg.Connection, standby_name: str) -> bool:
    row = conn.execute(
        "SELECT state FROM pg_stat_replication WHERE application_name = %s", (standby_name,)
    ).fetchone()
    return bool(row and row[0] == "streaming")


def _wait_streaming(conn: psycopg.Connection, standby_name: str, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT state FROM pg_stat_replication WHERE application_name = %s",
            (standby_name,),
        ).fetchone()
        if row and row[0] == "streaming":
            return
        time.sleep(0.2)
    raise RuntimeError(f"standby {standby_name} did not start streaming within {timeout_s}s")


class PrimarySettings(Resource):
    """See :class:`PrimarySettingsProvider`."""

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(PrimarySettingsProvider(), name, props, opts)


# -- router entry --------------------------------------------------------------------------


class RouterEntryProvider(_Provider):
    """The shadow's server in the service's HAProxy backend, added at weight 0 (on this
    machine's loopback unless ``address`` says otherwise; ``source``: HAProxy's source
    address towards it)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Add the server through the runtime API (no reload)."""
        manager = HAProxyManager(Path(props["haproxy_dir"]))
        manager.add_server(
            props["service"],
            ServerEntry(props["server"], props.get("address", "127.0.0.1"), int(props["port"]),
                        props.get("source", "")),
            weight=0,
        )
        return CreateResult(id_=f"{props['service']}/{props['server']}", outs=props)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Roles moved: the entry is now the former primary's, which keeps its weight (0 after
        the cutover); the new primary's entry stays untouched (it carries the traffic). The
        standby made anew elsewhere (a spare host): its entry moves to the new address."""
        where = ("address", "port")
        if any(olds.get(k) != news.get(k) for k in where) and olds.get("server") == \
                news["server"]:
            HAProxyManager(Path(news["haproxy_dir"])).remove_standby_server(
                news["service"], news["server"])
        self.create(news)
        return UpdateResult(outs=news)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Present while the running HAProxy has the server."""
        manager = HAProxyManager(Path(props["haproxy_dir"]))
        present = manager.running() and props["server"] in manager.server_names(props["service"])
        return ReadResult(id_=id_ if present else None, outs=props if present else {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Drain and delete the server."""
        manager = HAProxyManager(Path(props["haproxy_dir"]))
        if manager.running():
            manager.remove_server(props["service"], props["server"])


class RouterEntry(Resource):
    """See :class:`RouterEntryProvider`."""

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(RouterEntryProvider(), name, props, opts)
