"""HAProxy's runtime API is the router's steering wheel: on a real HAProxy its socket is
mode 0600 and owned by the worker's user, and HAProxy runs as that user, so no other local
user can change weights."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psutil
import pytest

from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.ports import free_ports

pytestmark = pytest.mark.integration


def test_the_runtime_socket_is_private_to_the_workers_user(tmp_path: Path) -> None:
    """Mode 0600, owned by this (the worker's) user, and the HAProxy process runs as it."""
    router_port, server_port = free_ports(2)
    haproxy = HAProxyManager(tmp_path / "haproxy")
    haproxy.ensure_service("db-private", router_port,
                           [ServerEntry("db-private", "127.0.0.1", server_port)])
    try:
        info = haproxy.socket_path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.geteuid()
        pid = int(haproxy.pid_file.read_text().split()[0])
        assert psutil.Process(pid).uids().effective == os.geteuid()
    finally:
        haproxy.stop()
