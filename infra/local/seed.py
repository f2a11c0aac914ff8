"""The shadow's full copy (``pg_basebackup``), startable before the Pulumi engine is up.

``pulumi up`` spends about 1.5 s (stack creation, engine, provider host) before the data
directory resource's ``create`` runs. :class:`EarlySeed` starts the same copy at once, in a
thread of the caller, and the provider's ``create`` then waits for it and adopts the result,
so the copy overlaps with Pulumi's start instead of following it.

Both go through :func:`seed_data_dir`, which holds an exclusive ``flock`` on
``<home>/seed.lock`` for the whole copy, and hands that lock to ``pg_basebackup`` too (an
inherited descriptor): the lock lives as long as either the caller or the copy, so a second
caller (the provider, a retry after SIGKILL) never removes a copy someone is still writing. The
copy goes to ``data.partial`` and is renamed to ``data`` only when complete; a caller that gets
the lock and finds no complete ``data`` starts over. Hand-written because the hand-off spans
processes (worker thread, Pulumi's provider host, an orphaned ``pg_basebackup``) and a file
lock is the one primitive all of them share.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from infra.local import archiving
from infra.local.postgres import PgServer, pg_bin, prepare_dir, run_server_tool

log = logging.getLogger(__name__)

SEED_POSITION_FILE = "seed_lsn"
"""File in the shadow's home holding the WAL position its copy started from."""
SEED_SECONDS_FILE = "seed_seconds"
"""File in the shadow's home holding how long the copy took (whoever made it)."""
LOCK_FILE = "seed.lock"
"""File in the shadow's home that the copying process holds an exclusive ``flock`` on."""


def ensure_slot(conninfo: str, slot: str) -> None:
    """Create the physical replication slot ``slot`` (reserving WAL now) unless it exists."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if exists:
            return
        # Created meanwhile by the other of the early copy and the slot resource: fine.
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))


def is_standby_data(server: PgServer) -> bool:
    """Whether ``server``'s data directory is a standby's: initialised and with
    ``standby.signal`` (a finished copy with its settings, or a rewound former primary)."""
    return server.initialised() and (server.data_dir / "standby.signal").exists()


def seed_data_dir(props: dict[str, Any]) -> None:
    """Make ``props['home']/data`` a complete standby copy of the primary (idempotent).

    ``props`` are the data directory resource's inputs. Blocks while another process copies.
    """
    home = Path(props["home"])
    server = PgServer(home=home, port=int(props["port"]))
    prepare_dir(home, mode=0o755)
    with _exclusive(home / LOCK_FILE) as lock_fd:
        if is_standby_data(server):
            return
        started = time.monotonic()
        partial = home / "data.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(server.data_dir, ignore_errors=True)
        prepare_dir(partial)
        if props["slot"]:
            ensure_slot(props["primary_conninfo"], props["slot"])
        # Synced (no --no-sync): the standby's first start fsyncs every file of a copy
        # anyway (PostgreSQL's crash-recovery sync); done here, it overlaps Pulumi's start.
        argv = [pg_bin("pg_basebackup"), "-d", props["replication_conninfo"], "-D", str(partial),
                "-X", "stream", "-c", "fast"]
        if props["slot"]:
            argv += ["-S", props["slot"]]
        if props["compression"] != "none":
            argv += [f"--compress=server-{props['compression']}:1"]
        try:
            run_server_tool(argv, pass_fds=(lock_fd,), timeout_s=None)  # as long as the data
        except Exception:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _record_seed_position(partial, home)
        write_standby_settings(PgServer(home=home, port=server.port), props, data_dir=partial)
        partial.rename(server.data_dir)
        (home / SEED_SECONDS_FILE).write_text(f"{time.monotonic() - started:.3f}\n")


def seed_seconds(home: Path) -> float | None:
    """How long the copy in ``home`` took, if it recorded it."""
    try:
        return float((home / SEED_SECONDS_FILE).read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def _exclusive(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _record_seed_position(copy_dir: Path, home: Path) -> None:
    """Keep the copy's start position, so "bytes shipped since seeded" can be computed."""
    label = copy_dir / "backup_label"
    for line in label.read_text().splitlines() if label.exists() else []:
        if line.startswith("START WAL LOCATION:"):
            (home / SEED_POSITION_FILE).write_text(line.split()[3] + "\n")
            return


def write_standby_settings(
    server: PgServer, props: dict[str, Any], *, data_dir: Path | None = None
) -> None:
    """The standby's replication source for its tier (stream, or archive for tier 3)."""
    if int(props["tier"]) == 3:
        archive = props["archive_dir"]
        source = {
            "primary_conninfo": "''",
            "restore_command": f"'{archiving.restore_command(archive)}'",
            "recovery_target_timeline": "'latest'",
        }
    else:
        conninfo = props["replication_conninfo"] + f" application_name={props['standby_name']}"
        source = {
            "primary_conninfo": "'" + conninfo.replace("'", "''") + "'",
            "primary_slot_name": f"'{props['slot']}'",
        }
    # TLS with the node's own certificate (inputs of stacks made before TLS lack it).
    source.update(props.get("server_settings") or {})
    server.write_standby_config(source, data_dir=data_dir)


class EarlySeed:
    """Runs :func:`seed_data_dir` in a thread while the caller starts ``pulumi up``.

    While it copies, ``on_progress`` hears how far it got every few seconds, so an activity
    keeps heartbeating through a long copy (Pulumi prints nothing while a resource waits).
    A failure here is only logged: the data directory resource copies again and reports the
    error itself, with the stack's usual clean-up.
    """

    PROGRESS_INTERVAL_S = 2.0

    def __init__(
        self, props: dict[str, Any], on_progress: Callable[[str], None] | None = None
    ) -> None:
        self._props = props
        self._on_progress = on_progress
        self._thread = threading.Thread(target=self._run, name="early-seed", daemon=True)
        self._ticker = threading.Thread(target=self._tick, name="early-seed-progress",
                                        daemon=True)

    @classmethod
    def start_if_needed(
        cls, props: dict[str, Any], on_progress: Callable[[str], None] | None = None
    ) -> EarlySeed | None:
        """Start a copy when the shadow has no data directory at all (a new shadow)."""
        if (Path(props["home"]) / "data").exists():
            return None  # a tier change, a retry past the copy, or a promoted shadow
        seed = cls(props, on_progress)
        seed._thread.start()
        if on_progress is not None:
            seed._ticker.start()
        return seed

    def join(self) -> None:
        """Wait for the copy (the provider already waited for it on success)."""
        self._thread.join()
        if self._ticker.is_alive():
            self._ticker.join()

    def _run(self) -> None:
        try:
            seed_data_dir(self._props)
        except Exception as err:  # the provider redoes it and reports
            log.warning("Early copy for %s failed: %s", self._props["home"], err)

    def _tick(self) -> None:
        partial = Path(self._props["home"]) / "data.partial"
        while not _joined(self._thread, self.PROGRESS_INTERVAL_S) and self._on_progress:
            self._on_progress(f"copying the primary: {_tree_bytes(partial) // 2**20} MiB")


def _joined(thread: threading.Thread, timeout_s: float) -> bool:
    thread.join(timeout_s)
    return not thread.is_alive()


def _tree_bytes(root: Path) -> int:
    """Bytes in the files under ``root`` (0 once it is gone or renamed)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def drop_idle_slot(conninfo: str, slot: str) -> None:
    """Drop ``slot`` if it exists and no standby uses it; an unreachable primary is skipped."""
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s AND NOT active",
                (slot,),
            )
    except psycopg.Error as err:
        log.warning("Could not check for a leftover slot %s: %s", slot, err)
