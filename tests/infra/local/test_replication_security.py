"""Replication on the local platform over TLS (verify-full) with a SCRAM password read from a
passfile: the standby streams encrypted, and a wrong password, a plaintext attempt or a primary
without TLS is refused before anything is created. Real PostgreSQL, HAProxy and Pulumi."""

from __future__ import annotations

import stat
import time
import uuid
from pathlib import Path

import pytest

from infra.errors import InvalidRequestError
from infra.local.platform import LocalPlatform
from infra.local.postgres import PgEndpoint, alter_system, query_one
from infra.local.secure_replication import (
    create_replication_role,
    require_tls_scram_replication,
)
from tests.conftest import LocalService, with_spec
from workers.registry import platforms
from workers.settings import Settings, load_settings

ROLE = "replicator"


def _harden(service: LocalService, password: str) -> None:
    create_replication_role(service.primary, ROLE, password)
    require_tls_scram_replication(service.primary, ROLE)


def _passfile(folder: Path, password: str, *, mode: int = 0o600) -> Path:
    passfile = folder / "pgpass"
    passfile.write_text(f"127.0.0.1:*:replication:{ROLE}:{password}\n")
    passfile.chmod(mode)
    return passfile


def _platform(settings: Settings, service: LocalService, **env: str) -> LocalPlatform:
    worker = load_settings({"SHADOWSHIFT_STATE_DIR": str(settings.state_dir), **env})
    request = with_spec(service.request, replication_user=ROLE)
    platform = platforms(worker).platform_for(request)
    assert isinstance(platform, LocalPlatform)
    return platform


def _walsender_ssl(primary: PgEndpoint, standby: str, timeout_s: float = 30) -> tuple[str, bool]:
    """``(state, ssl)`` of ``standby``'s walsender once it streams (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with primary.connect() as conn:
            row = conn.execute(
                "SELECT r.state, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
                " WHERE r.application_name = %s", (standby,)).fetchone()
        if row and row[0] == "streaming":
            return str(row[0]), bool(row[1])
        assert time.monotonic() < deadline, f"{standby} did not stream: {row}"
        time.sleep(0.1)


def test_the_standby_streams_over_tls_as_the_scram_role(
    settings: Settings, local_service: LocalService, tmp_path: Path
) -> None:
    """With a SCRAM role, TLS-only rules and the password in a passfile, the shadow streams
    with ssl=true in pg_stat_ssl; its settings and the stack hold only the passfile's path,
    and its copy of the passfile is 0600, owned by the servers' user."""
    password = f"pw-{uuid.uuid4().hex}"
    _harden(local_service, password)
    platform = _platform(settings, local_service,
                         SHADOWSHIFT_PG_PASSFILE=str(_passfile(tmp_path, password)))
    platform.provision_shadow()
    platform.close()
    spec = platform.spec
    assert _walsender_ssl(local_service.primary.endpoint, spec.shadow_node) == ("streaming", True)
    stored = query_one(local_service.primary.endpoint,
                       "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (ROLE,))
    assert str(stored).startswith("SCRAM-SHA-256$")
    auto_conf = (spec.shadow_home / "data" / "postgresql.auto.conf").read_text()
    assert "sslmode=verify-full" in auto_conf and f"user={ROLE}" in auto_conf
    assert f"ssl_cert_file = '{spec.pki.folder}/{spec.shadow_node}.crt'" in auto_conf
    copy = spec.passfile_copy(spec.shadow_node)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    for path in [*(settings.state_dir / "pulumi").rglob("*"),
                 *(spec.shadow_home / "data").glob("*.conf")]:
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("case", ["wrong password", "no tls"])
def test_a_refused_replication_login_creates_nothing(
    settings: Settings, local_service: LocalService, tmp_path: Path, case: str
) -> None:
    """A wrong password, or a plaintext connection to a primary that takes replication over
    TLS only, is refused by preflight with the server's reason; no shadow, no stack."""
    _harden(local_service, f"pw-{uuid.uuid4().hex}")
    env = {"SHADOWSHIFT_PG_PASSFILE": str(_passfile(tmp_path, "not-the-password"))}
    expected = "password authentication failed"
    if case == "no tls":
        env["SHADOWSHIFT_PG_REPLICATION_SSLMODE"] = "disable"
        expected = "no encryption"
    platform = _platform(settings, local_service, **env)
    with pytest.raises(InvalidRequestError, match=expected):
        platform.provision_shadow()
    assert not (platform.spec.shadow_home / "data").exists()
    assert not platform.driver.exists(platform.spec.stack_name)


def test_a_primary_without_tls_is_refused_when_replication_requires_it(
    settings: Settings, local_service: LocalService
) -> None:
    """verify-full (the default) against a primary with ssl=off: preflight names the setting
    to change instead of letting a copy fail."""
    create_replication_role(local_service.primary, ROLE, f"pw-{uuid.uuid4().hex}")
    with local_service.primary.endpoint.connect() as conn:
        alter_system(conn, "ssl", "off")
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while query_one(local_service.primary.endpoint, "SHOW ssl") != "off":
        assert time.monotonic() < deadline, "ssl stayed on after the reload"
        time.sleep(0.05)
    platform = _platform(settings, local_service)
    with pytest.raises(InvalidRequestError, match="does not offer TLS"):
        platform.preflight()


def test_a_passfile_others_can_read_is_refused(
    settings: Settings, local_service: LocalService, tmp_path: Path
) -> None:
    """libpq silently ignores a group- or world-readable passfile; preflight says so, naming
    the variable and the chmod, and never a line of the file."""
    password = f"pw-{uuid.uuid4().hex}"
    _harden(local_service, password)
    passfile = _passfile(tmp_path, password, mode=0o644)
    platform = _platform(settings, local_service, SHADOWSHIFT_PG_PASSFILE=str(passfile))
    with pytest.raises(InvalidRequestError, match=r"SHADOWSHIFT_PG_PASSFILE.*chmod 600") as err:
        platform.preflight()
    assert password not in str(err.value)
