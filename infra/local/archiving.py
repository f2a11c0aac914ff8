"""Tier 3's WAL shipping: compressed archive/restore commands, and the primary's own settings.

Segments are compressed with ``zstd -1`` on the way into the archive: a 16 MiB segment that
``archive_timeout`` closed early is mostly empty and shrinks to a few KiB (lz4 -1 gave ~70 KB,
gzip -1 ~76 KB on the same segment, at twice zstd's time for gzip). Each file appears under its
final name only when complete (written to ``.tmp``, then renamed), so the standby's
``restore_command`` never reads half a segment.

Tier 3 overwrites the primary's ``archive_command`` and ``archive_timeout``. What they were
before (value, and whether it came from ``ALTER SYSTEM``) is recorded first, in a file beside
the archive and in the resource's state, and put back when tier 3 goes: resetting blindly
would lose an operator's ``ALTER SYSTEM`` setting, and with ``archive_mode=on`` an empty
``archive_command`` makes the primary keep every WAL segment.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import psycopg

from infra.errors import InvalidRequestError
from infra.local.postgres import alter_system, prepare_dir

log = logging.getLogger(__name__)

SETTINGS = ("archive_command", "archive_timeout")
"""The primary's settings tier 3 takes over."""
COMPRESSOR = "zstd"


def archive_command(archive_dir: str) -> str:
    """The primary's ``archive_command``: compress, never overwrite, appear only complete."""
    target = f"{archive_dir}/%f.zst"
    return (
        f"test ! -f {target} && {COMPRESSOR} -q -1 -f --no-progress %p -o {target}.tmp"
        f" && mv {target}.tmp {target}"
    )


def restore_command(archive_dir: str) -> str:
    """The standby's ``restore_command`` (fails, as it must, for a file not archived)."""
    return f"{COMPRESSOR} -q -d -f --no-progress {archive_dir}/%f.zst -o %p"


def check_tools() -> None:
    """Refuse tier 3 where the compressor is missing (it runs as the server's OS user)."""
    if shutil.which(COMPRESSOR) is None:
        raise InvalidRequestError(
            f"tier 3 compresses archived WAL with {COMPRESSOR}: install it "
            f"(apt-get install {COMPRESSOR}) or choose tier 1 or 2"
        )


def previous_file(archive_dir: Path) -> Path:
    """Where the primary's own archiving settings are kept while tier 3 runs."""
    return archive_dir.with_name(archive_dir.name + ".previous.json")


def enable(conn: psycopg.Connection, archive_dir: Path, interval_s: int) -> dict[str, Any]:
    """Point the primary's archiving at ``archive_dir``; returns its previous settings.

    Idempotent: a retry after a crash finds the recorded settings and keeps them, instead of
    recording tier 3's own command as "previous". Reload separately.
    """
    prepare_dir(archive_dir, mode=0o750)
    record = previous_file(archive_dir)
    try:
        previous: dict[str, Any] = json.loads(record.read_text())
    except (OSError, ValueError):
        previous = _current(conn)
        record.write_text(json.dumps(previous) + "\n")
    alter_system(conn, "archive_command", archive_command(str(archive_dir)))
    alter_system(conn, "archive_timeout", str(int(interval_s)))
    return previous


def disable(conn: psycopg.Connection, archive_dir: Path, previous: dict[str, Any] | None) -> None:
    """Put the primary's own archiving settings back (reload separately).

    ``previous`` comes from the resource state; the file beside the archive stands in when
    the state lacks it (a stack created before this was recorded).
    """
    if not previous:
        try:
            previous = json.loads(previous_file(archive_dir).read_text())
        except (OSError, ValueError):
            previous = {}
    for name in SETTINGS:
        entry = (previous or {}).get(name) or {}
        # From ALTER SYSTEM: set it again. From postgresql.conf (or the default): RESET
        # brings that value back and leaves postgresql.conf in charge, as before.
        alter_system(conn, name, entry["value"] if entry.get("from_alter_system") else None)
    if not (previous or {}).get("archive_command", {}).get("value"):
        log.warning(
            "Tier 3 removed; the primary's archive_command is empty again. With archive_mode=on "
            "it keeps every WAL segment until one is set."
        )
    previous_file(archive_dir).unlink(missing_ok=True)


def _current(conn: psycopg.Connection) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT name, setting, coalesce(sourcefile, '') FROM pg_settings WHERE name = ANY(%s)",
        (list(SETTINGS),),
    ).fetchall()
    return {
        name: {"value": value, "from_alter_system": source.endswith("postgresql.auto.conf")}
        for name, value, source in rows
    }
