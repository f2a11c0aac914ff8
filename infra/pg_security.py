"""How a shadow authenticates and encrypts its replication connection to the primary.

The worker's settings say it once (``SHADOWSHIFT_PG_REPLICATION_SSLMODE``,
``SHADOWSHIFT_PG_PASSFILE``); platforms turn it into libpq parameters. The password itself
never travels through ShadowShift: only the *path* of a libpq passfile does, so it stays out
of workflow inputs and results, Pulumi state, logs and metric labels. The server processes
that need it (``pg_basebackup``, the standby's WAL receiver) read a copy with only the
replication role's lines, mode 0600, owned by the server's OS user (:func:`install_passfile`).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InvalidRequestError
from infra.files import write_whole

SSLMODES = ("verify-full", "disable")
"""Allowed replication ``sslmode`` values: verify the server's certificate and name, or no TLS
(a trusted network only)."""

STANDBY_PASSFILE = "replication.pgpass"
"""Name of the passfile copy in a standby's home folder (next to its data directory, never in
it: a copy or a rewind of the data directory must not carry it along)."""


@dataclass(frozen=True, kw_only=True)
class ReplicationSecurity:
    """TLS and password settings of every replication connection a worker sets up."""

    sslmode: str = "disable"
    """``verify-full`` (TLS; the server's certificate must chain to :attr:`ca_file` and name
    the host connected to) or ``disable``."""
    passfile: Path | None = None
    """The operator's libpq passfile (``host:port:database:user:password`` lines, mode 0600)
    holding the replication role's password; ``None``: no password (``trust`` or a client
    certificate)."""
    server_ca: Path | None = None
    """The CA (PEM) of the hosts' servers (the worker's ``SHADOWSHIFT_PG_TLS_CA``): the control
    worker's own SQL sessions to a host's PostgreSQL (checks, slot, tier settings, fencing,
    promotion, probes of a standby) use ``sslmode=verify-full`` with it; ``None``: they connect
    as libpq does by default."""

    def __post_init__(self) -> None:
        if self.sslmode not in SSLMODES:
            raise InvalidRequestError(
                f"replication sslmode {self.sslmode!r} is not one of {SSLMODES}"
            )

    @property
    def tls(self) -> bool:
        """Whether replication connections use TLS."""
        return self.sslmode != "disable"


def passfile_entries(text: str) -> list[tuple[list[str], str]]:
    """The entries of a libpq passfile: the five fields of each line (``\\:`` and ``\\\\``
    unescaped) with the line as written. Comments, blank and malformed lines are left out."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields: list[str] = []
        current, escaped = "", False
        for char in line:
            if escaped:
                current, escaped = current + char, False
            elif char == "\\":
                escaped = True
            elif char == ":" and len(fields) < 4:
                fields.append(current)
                current = ""
            else:
                current += char
        fields.append(current)
        if len(fields) == 5:
            entries.append((fields, line))
    return entries


def check_passfile_mode(passfile: Path) -> str:
    """Refuse a passfile that cannot be read or that libpq would ignore; its text.

    Raises:
        InvalidRequestError: missing or readable by others (naming the setting, never a line).
    """
    try:
        mode = passfile.stat().st_mode
        text = passfile.read_text()
    except OSError as err:
        raise InvalidRequestError(
            f"SHADOWSHIFT_PG_PASSFILE {passfile} cannot be read: {err.strerror}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidRequestError(
            f"SHADOWSHIFT_PG_PASSFILE {passfile} is readable by others (mode "
            f"{stat.S_IMODE(mode):o}); libpq ignores such a file: chmod 600 it"
        )
    return text


def check_passfile(passfile: Path, user: str) -> None:
    """Refuse a passfile libpq would ignore or that has no line for ``user``.

    The messages name the file and the setting, never a line of it.

    Raises:
        InvalidRequestError: missing, readable by others, or without an entry for ``user``.
    """
    text = check_passfile_mode(passfile)
    if not _lines_for(text, user):
        raise InvalidRequestError(
            f"SHADOWSHIFT_PG_PASSFILE {passfile} has no line for role {user!r} "
            "(host:port:replication:<role>:<password>, '*' matches anything)"
        )


def install_passfile(source: Path, target: Path, user: str, owner: str | None) -> None:
    """Write the lines of ``source`` that may serve ``user`` to ``target``, mode 0600 and
    owned by ``owner`` (an OS user; ``None``: ourselves), replacing it atomically.

    Raises:
        InvalidRequestError: see :func:`check_passfile`.
    """
    check_passfile(source, user)
    lines = _lines_for(source.read_text(), user)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_whole(target, ("\n".join(lines) + "\n").encode(), 0o600, owner=owner)


def _lines_for(text: str, user: str) -> list[str]:
    return [line for fields, line in passfile_entries(text) if fields[3] in (user, "*")]
