"""``PgServer.start`` returns as soon as the server is ready, and what it started survives
its caller (real PostgreSQL)."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from infra.local.ports import free_port
from infra.local.postgres import PgServer, startup_sync_method
from infra.local.resources import ShadowDataDirProvider
from workers.settings import REPO_ROOT

_START_THEN_SIGINT = """
import os, signal, sys
from pathlib import Path
from infra.local.postgres import PgServer
from infra.local.resources import ShadowDataDirProvider
PgServer(home=Path(sys.argv[1]), port=int(sys.argv[2])).start()
os.killpg(0, signal.SIGINT)  # what a Pulumi provider host or a Ctrl-C gets right after
"""


def _server(tmp_path: Path) -> PgServer:
    tmp_path.chmod(0o755)  # the server runs as postgres, which must reach its directory
    server = PgServer(home=tmp_path / "pg", port=free_port())
    server.init()
    return server


@pytest.mark.integration  # starts a server or our program
def test_server_survives_a_sigint_to_its_starters_group(tmp_path: Path) -> None:
    """``pg_ctl start -w`` stops the server it still waits for when it gets SIGINT; start()
    returns before pg_ctl notices readiness, so pg_ctl must not be in the caller's group."""
    server = _server(tmp_path)
    try:
        # pg_ctl's own 100 ms look sometimes sees readiness first (then start() waited for it
        # and there is no race to lose); three tries make a miss of the race unlikely.
        for _ in range(3):
            subprocess.run([sys.executable, "-c", _START_THEN_SIGINT, str(server.home),
                            str(server.port)], cwd=REPO_ROOT, start_new_session=True,
                           timeout=60, check=False)
            time.sleep(0.3)  # longer than pg_ctl's 100 ms look
            assert server.accepting(), (server.log_file.read_text().splitlines() or [""])[-1]
            server.stop()
            assert not server.running()
    finally:
        server.stop(mode="immediate")


@pytest.mark.integration  # starts a server or our program
def test_start_and_stop_are_idempotent(tmp_path: Path) -> None:
    server = _server(tmp_path)
    try:
        server.start()
        server.start()
        assert server.accepting()
    finally:
        server.stop()
        server.stop()
    assert not server.running()


@pytest.mark.integration  # starts a server or our program
def test_deleting_the_data_dir_resource_stops_its_server(tmp_path: Path) -> None:
    """A server the stack never recorded (worker killed after ``pg_ctl start``) is stopped
    by the data directory's delete, not left running on a removed directory."""
    server = _server(tmp_path)
    server.start()
    pid = server.pid()
    assert pid is not None
    ShadowDataDirProvider().delete(str(server.data_dir),
                                   {"home": str(server.home), "port": server.port})
    assert not server.home.exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize(("system", "release", "method"), [
    ("Linux", "6.18.44-fc-v1272", "syncfs"), ("Linux", "5.8.0-63-generic", "syncfs"),
    ("Linux", "5.4.0-216-generic", "fsync"), ("Linux", "4.19.0-27-amd64", "fsync"),
    ("Linux", "unparsable", "fsync"), ("Darwin", "23.4.0", "fsync"),
])
def test_startup_sync_uses_syncfs_only_where_it_reports_errors(
    monkeypatch: pytest.MonkeyPatch, system: str, release: str, method: str
) -> None:
    """syncfs only on Linux 5.8 and later, where it reports write-back errors; else fsync."""
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "release", lambda: release)
    assert startup_sync_method() == method
