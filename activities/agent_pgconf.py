"""The configuration files the agent writes into a server's data directory.

- ``shadowshift.conf`` (a primary's; ``postgresql.conf`` includes it last): address, port,
  unix socket, replication settings, the caller's extras, ``wal_log_hints = on`` always;
- ``postgresql.auto.conf`` (a standby's, through ``infra.local``'s ``write_standby_config``):
  where it streams from, and a reply every second for its primary's lease;
- a block at the top of ``pg_hba.conf``: who may connect, and how
  (``activities.agent_security.hba_rows``: TLS and SCRAM for replication from the network when
  the agent has TLS files).

Each writer leaves a file alone when it already says the same, and reports whether it changed
anything, so an activity restarts or reloads a server only when it must.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from activities.agent_security import (
    conf_quoted,
    hba_rows,
    server_tls_settings,
    source_conninfo,
)
from activities.agent_server import ManagedServer, write_atomically
from contracts.agent import PrimarySource
from infra.errors import InvalidRequestError
from infra.local.postgres import give_to_server_user

SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_.]*\Z")
"""Allowed ``postgresql.conf`` setting names."""
SETTINGS_FILE = "shadowshift.conf"
"""Settings file the agent owns inside a primary's data directory, included last by
``postgresql.conf``."""
HBA_BEGIN = "# shadowshift agent: begin (rewritten by the agent; edit above or below)"
HBA_END = "# shadowshift agent: end"


def listen_addresses(server: ManagedServer) -> str:
    """``listen_addresses``: the host's address, and localhost."""
    addresses = [server.config.address]
    if server.config.address not in ("127.0.0.1", "localhost"):
        addresses.append("127.0.0.1")
    return conf_quoted(",".join(addresses))


def write_primary_settings(server: ManagedServer, extra: dict[str, str],
                           data_dir: Path | None = None) -> bool:
    """Write the agent's settings file (address, port, socket, replication, TLS with the
    host's certificate when the agent has one, ``extra``, ``wal_log_hints = on`` always) and
    include it from ``postgresql.conf``; returns whether anything changed."""
    for name, value in extra.items():
        if not SETTING_NAME.match(name) or "\n" in value:
            raise InvalidRequestError(
                f"setting {name!r} = {value!r} is not a postgresql.conf line: use a "
                "lower-case name and a one-line value (quote strings)")
    target = data_dir or server.data_dir
    settings = {
        "listen_addresses": listen_addresses(server),
        "port": str(server.port),
        "unix_socket_directories": conf_quoted(str(server.home)),
        "wal_level": "replica",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
        # A rewind reads the former primary's WAL back to the fork point.
        "wal_keep_size": "'256MB'",
        "hot_standby": "on",
        **server_tls_settings(server),
        **extra,
        # pg_rewind needs it: a primary that cannot be rewound must be copied again.
        "wal_log_hints": "on",
    }
    text = (f"# written by the shadowshift agent of {server.config.host}: "
            "ensure_primary rewrites it\n"
            + "".join(f"{name} = {value}\n" for name, value in settings.items()))
    changed = _replace_if_different(target / SETTINGS_FILE, text)
    conf = target / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'\n"
    if include not in conf.read_text():
        with conf.open("a") as handle:
            handle.write("\n# the shadowshift agent's settings win: keep this line last\n"
                         + include)
        changed = True
    return changed


def write_standby_settings(server: ManagedServer, source: PrimarySource,
                           data_dir: Path | None = None) -> None:
    """Make a data directory this standby's: stream from ``source`` (its slot,
    ``application_name`` = the node name, a reply every second so the primary's
    ``reply_time`` stays fresh for its lease; TLS and the passfile copy when the agent has
    them), listen where the agent says, serve TLS with the host's certificate (it may be the
    primary a later standby verifies)."""
    conninfo = source_conninfo(server, source, replication=True, application_name=server.node)
    server.pg.write_standby_config({
        "listen_addresses": listen_addresses(server),
        "unix_socket_directories": conf_quoted(str(server.home)),
        "primary_conninfo": conf_quoted(conninfo),
        "primary_slot_name": conf_quoted(source.slot),
        "recovery_target_timeline": "'latest'",
        "wal_receiver_status_interval": "1s",
        **server_tls_settings(server),
    }, data_dir=data_dir)


def write_hba(server: ManagedServer, data_dir: Path | None = None) -> bool:
    """Put the agent's block (:func:`~activities.agent_security.hba_rows`) first in
    ``pg_hba.conf``; returns whether it changed."""
    path = (data_dir or server.data_dir) / "pg_hba.conf"
    original = path.read_text()
    kept, inside = [], False
    for line in original.splitlines(keepends=True):
        if line.startswith(HBA_BEGIN):
            inside = True
        elif line.startswith(HBA_END):
            inside = False
        elif not inside:
            kept.append(line)
    block = [f"{HBA_BEGIN}\n",
             *(f"{kind:<7} {db:<12} {user:<9} {net:<18} {method}\n"
               for kind, db, user, net, method in hba_rows(server.config)),
             f"{HBA_END}\n"]
    return _replace_if_different(path, "".join(block + kept))




def _replace_if_different(path: Path, text: str) -> bool:
    """Write ``text`` (owned by the server's user) unless ``path`` already holds it."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    write_atomically(path, text)
    give_to_server_user(path)
    return True
