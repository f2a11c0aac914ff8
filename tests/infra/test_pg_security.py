"""The passfile rules of replication security: libpq's format with its escapes, the checks
libpq would otherwise apply silently, and a copy holding only the replication role's lines."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra.errors import InvalidRequestError
from infra.pg_security import (
    ReplicationSecurity,
    check_passfile,
    install_passfile,
    passfile_entries,
)


def test_entries_unescape_colons_and_backslashes() -> None:
    """``\\:`` and ``\\\\`` belong to a field; comments and short lines are skipped."""
    text = "# comment\n*:*:replication:repl:pa\\:ss\\\\word\nbroken:line\n"
    [(fields, line)] = passfile_entries(text)
    assert fields == ["*", "*", "replication", "repl", "pa:ss\\word"]
    assert line.startswith("*:*:replication:repl:")


def test_the_copy_keeps_only_the_roles_lines(tmp_path: Path) -> None:
    """Other roles' passwords stay in the operator's file; the copy is 0600."""
    source = tmp_path / "pgpass"
    source.write_text("*:*:*:postgres:super-secret\n127.0.0.1:*:replication:repl:r-pw\n")
    source.chmod(0o600)
    target = tmp_path / "home" / "replication.pgpass"
    install_passfile(source, target, "repl", None)
    assert target.read_text() == "127.0.0.1:*:replication:repl:r-pw\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_passfile_without_the_role_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """The message names the variable and the role, never a password."""
    source = tmp_path / "pgpass"
    source.write_text("*:*:*:other:hunter2\n")
    source.chmod(0o600)
    with pytest.raises(InvalidRequestError, match="no line for role 'repl'") as err:
        check_passfile(source, "repl")
    assert "hunter2" not in str(err.value)


def test_an_unknown_sslmode_is_refused() -> None:
    """Only verify-full and disable: a mode that skips verification is not offered."""
    with pytest.raises(InvalidRequestError, match="require"):
        ReplicationSecurity(sslmode="require")
