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

from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.postgres import (
    PgServer,
    alter_system,
    pg_bin,
    prepare_dir,
    run_server_tool,
)


def _connect(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)


class _Provider(ResourceProvider):
    """Every input change replaces the resource: these are small, idempotent objects."""

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Replace on any input change; outputs (``out_*``) do not count."""
        changed = [k for k, v in news.items() if not k.startswith("out_") and olds.get(k) != v]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)


# -- replication slot ----------------------------------------------------------------------


class ReplicationSlotProvider(_Provider):
    """A physical replication slot on the primary, so it keeps WAL the shadow still needs."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create the slot unless it exists."""
        with _connect(props["conninfo"]) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (props["slot"],)
            ).fetchone()
            if not exists:
                conn.execute(
                    "SELECT pg_create_physical_replication_slot(%s, true)", (props["slot"],)
                )
        return CreateResult(id_=props["slot"], outs=props)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The slot as the primary sees it."""
        with _connect(props["conninfo"]) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (id_,)
            ).fetchone()
        return ReadResult(id_=id_ if row else None, outs=props if row else {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Drop the slot once no standby uses it (the standby is stopped before this runs)."""
        deadline = time.monotonic() + 30
        with _connect(props["conninfo"]) as conn:
            while True:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (id_,)
                ).fetchone()
                if row is None:
                    return
                if not row[0] or time.monotonic() > deadline:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (id_,))
                    return
                time.sleep(0.2)


class ReplicationSlot(Resource):
    """See :class:`ReplicationSlotProvider`."""

    def __init__(
        self, name: str, *, conninfo: str, slot: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            ReplicationSlotProvider(), name, {"conninfo": conninfo, "slot": slot}, opts
        )


# -- seeded data directory -----------------------------------------------------------------


class ShadowDataDirProvider(_Provider):
    """The shadow's data directory, seeded by a full copy (``pg_basebackup``).

    A tier change is an in-place update (new standby settings, then a reload), not a re-copy:
    only a new home, port or primary replaces the data directory.
    """

    _REPLACING = ("home", "port", "replication_conninfo")

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Replace for a new location or primary; update in place for anything else."""
        changed = [k for k, v in news.items() if not k.startswith("out_") and olds.get(k) != v]
        replaces = [k for k in changed if k in self._REPLACING]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Rewrite the standby settings for the new tier and make a running standby reload."""
        server = PgServer(home=Path(news["home"]), port=int(news["port"]))
        _write_standby_settings(server, news)
        if server.running():
            server.reload()
        outs = {**news, "out_data_dir": olds.get("out_data_dir"),
                "out_seed_seconds": olds.get("out_seed_seconds")}
        return UpdateResult(outs=outs)

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Copy the primary (compressed on the server side) and write the standby settings."""
        home = Path(props["home"])
        server = PgServer(home=home, port=int(props["port"]))
        started = time.monotonic()
        if not (server.initialised() and (server.data_dir / "standby.signal").exists()):
            partial = home / "data.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(server.data_dir, ignore_errors=True)
            prepare_dir(home, mode=0o755)
            prepare_dir(partial)
            argv = [
                pg_bin("pg_basebackup"),
                "-d",
                props["replication_conninfo"],
                "-D",
                str(partial),
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ]
            if props["slot"]:
                argv += ["-S", props["slot"]]
            if props["compression"] != "none":
                argv += [f"--compress=server-{props['compression']}:1"]
            try:
                run_server_tool(argv)
            except Exception:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            _record_seed_position(partial, home)
            partial.rename(server.data_dir)
        _write_standby_settings(server, props)
        outs = {
            **props,
            "out_data_dir": str(server.data_dir),
            "out_seed_seconds": round(time.monotonic() - started, 3),
        }
        return CreateResult(id_=str(server.data_dir), outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Present while the data directory holds a cluster."""
        exists = (Path(id_) / "PG_VERSION").exists()
        return ReadResult(id_=id_ if exists else None, outs=props if exists else {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Remove the data directory and the shadow's home."""
        shutil.rmtree(props["home"], ignore_errors=True)


SEED_POSITION_FILE = "seed_lsn"
"""File in the shadow's home holding the WAL position its copy started from."""


def _record_seed_position(copy_dir: Path, home: Path) -> None:
    """Keep the copy's start position, so "bytes shipped since seeded" can be computed."""
    label = copy_dir / "backup_label"
    for line in label.read_text().splitlines() if label.exists() else []:
        if line.startswith("START WAL LOCATION:"):
            (home / SEED_POSITION_FILE).write_text(line.split()[3] + "\n")
            return


def _write_standby_settings(server: PgServer, props: dict[str, Any]) -> None:
    if int(props["tier"]) == 3:
        archive = props["archive_dir"]
        source = {
            "primary_conninfo": "''",
            "restore_command": f"'cp {archive}/%f %p'",
            "recovery_target_timeline": "'latest'",
        }
    else:
        conninfo = props["replication_conninfo"] + f" application_name={props['standby_name']}"
        source = {
            "primary_conninfo": "'" + conninfo.replace("'", "''") + "'",
            "primary_slot_name": f"'{props['slot']}'",
        }
    server.write_standby_config(source)


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
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            StandbyProcessProvider(), name, {"home": home, "port": port, "data_dir": data_dir}, opts
        )


# -- replication settings on the primary ---------------------------------------------------


class PrimarySettingsProvider(_Provider):
    """Tier settings on the primary: WAL compression, synchronous standby, archiving."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Apply the tier once the standby streams (tier 1 would block writes before)."""
        tier = int(props["tier"])
        with _connect(props["conninfo"]) as conn:
            alter_system(conn, "wal_compression", "lz4")
            if tier == 1:
                _wait_streaming(conn, props["standby_name"], timeout_s=120)
                names = f'FIRST 1 ("{props["standby_name"]}")'
                alter_system(conn, "synchronous_standby_names", names)
                alter_system(conn, "synchronous_commit", "on")
            else:
                alter_system(conn, "synchronous_standby_names", None)
            if tier == 3:
                archive = props["archive_dir"]
                prepare_dir(Path(archive), mode=0o750)
                command = f"test ! -f {archive}/%f && cp %p {archive}/%f"
                alter_system(conn, "archive_command", command)
                alter_system(conn, "archive_timeout", str(int(props["archive_interval_s"])))
            conn.execute("SELECT pg_reload_conf()")
        return CreateResult(id_=f"{props['standby_name']}-settings", outs=props)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Always present: settings cannot vanish without an operator."""
        return ReadResult(id_=id_, outs=props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Stop waiting for this standby and stop archiving for it."""
        with _connect(props["conninfo"]) as conn:
            alter_system(conn, "synchronous_standby_names", None)
            if int(props["tier"]) == 3:
                alter_system(conn, "archive_command", None)
                alter_system(conn, "archive_timeout", None)
            conn.execute("SELECT pg_reload_conf()")
        if int(props["tier"]) == 3:
            shutil.rmtree(props["archive_dir"], ignore_errors=True)


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
    """The shadow's server in the service's HAProxy backend, added at weight 0."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Add the server through the runtime API (no reload)."""
        manager = HAProxyManager(Path(props["haproxy_dir"]))
        manager.add_server(
            props["service"],
            ServerEntry(props["server"], "127.0.0.1", int(props["port"])),
            weight=0,
        )
        return CreateResult(id_=f"{props['service']}/{props['server']}", outs=props)

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
