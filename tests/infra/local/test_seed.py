"""The full copy's hand-off between the early copy, the provider and a copy whose caller died.

Real PostgreSQL and ``pg_basebackup``; the seed functions are the ones the provider and
``LocalPlatform.provision_shadow`` call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from infra.local.postgres import PgServer, query_one
from infra.local.program import data_dir_props
from infra.local.seed import SEED_SECONDS_FILE, EarlySeed, is_standby_data, seed_data_dir
from infra.local.spec import LocalShadowSpec
from tests.conftest import LocalService
from workers.settings import REPO_ROOT, Settings

FILLER_ROWS = 600_000
"""About 260 MB: a copy long enough to be caught while it runs, even on a fast machine."""


def _props(settings: Settings, service: LocalService) -> dict[str, Any]:
    request = service.request
    spec = LocalShadowSpec(
        instance_id=request.instance_id, primary_port=request.spec.primary_port,
        shadow_port=request.spec.shadow_port, router_port=request.spec.router_port,
        state_dir=settings.state_dir, tier=2,
    )
    return data_dir_props(spec)


def _fill(service: LocalService) -> None:
    with service.primary.endpoint.connect() as conn:
        conn.execute("CREATE TABLE filler AS SELECT g, repeat('x', 400) AS pad "
                     f"FROM generate_series(1, {FILLER_ROWS}) g")


def _wait_for(condition: Any, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _copies(home: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and Path(cmdline[0]).name == "pg_basebackup" and str(home) in " ".join(cmdline):
            found.append(process)
    return found


def _check_copy(home: Path, port: int) -> None:
    """The copy is a complete standby holding every filler row."""
    server = PgServer(home=home, port=port)
    assert is_standby_data(server) and not (home / "data.partial").exists()
    server.start()
    try:
        assert query_one(server.endpoint, "SELECT count(*) FROM filler") == FILLER_ROWS
    finally:
        server.stop(mode="immediate")


class _ChattyEarlySeed(EarlySeed):
    PROGRESS_INTERVAL_S = 0.05


def test_second_caller_waits_and_adopts(settings: Settings, local_service: LocalService) -> None:
    """The early copy and the provider at once: the early copy copies (telling its caller how
    far it got, for heartbeats), the provider waits for it to finish and adopts it instead of
    starting over."""
    _fill(local_service)
    props = _props(settings, local_service)
    home = Path(props["home"])
    heard: list[str] = []
    first = _ChattyEarlySeed.start_if_needed(props, heard.append)
    assert first is not None
    _wait_for((home / "data.partial").exists, "the early copy never started")
    partial_inode = (home / "data.partial").stat().st_ino

    seed_data_dir(props)  # the provider's call: blocks on the early copy's lock

    first.join()
    assert (home / SEED_SECONDS_FILE).exists()
    assert heard and all(line.startswith("copying the primary: ") for line in heard)
    assert max(int(line.split()[-2]) for line in heard) > 0  # MiB copied so far
    # A shadow with a data directory gets no early copy (tier changes, retries past it).
    assert _ChattyEarlySeed.start_if_needed(props, heard.append) is None
    # The rename keeps the inode: this is still the first caller's copy, not a second one.
    assert (home / "data").stat().st_ino == partial_inode
    _check_copy(home, local_service.request.spec.shadow_port)


def test_copy_orphaned_by_a_killed_caller_is_waited_for(
    settings: Settings, local_service: LocalService
) -> None:
    """The caller is SIGKILLed mid-copy and its pg_basebackup lives on, holding the lock it
    inherited: the next caller waits for that copy to end (never deletes files under it),
    then copies afresh, since the orphan's copy was never renamed into place."""
    _fill(local_service)
    props = _props(settings, local_service)
    home = Path(props["home"])
    code = "import json, sys; from infra.local.seed import seed_data_dir; " \
           "seed_data_dir(json.loads(sys.argv[1]))"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    caller = subprocess.Popen([sys.executable, "-c", code, json.dumps(props)], cwd=REPO_ROOT,
                              env=env)
    try:
        _wait_for(lambda: (home / "data.partial").exists() and _copies(home),
                  "the caller's copy never started")
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    orphans = _copies(home)
    assert orphans, "the copy ended with its caller; nothing left to wait for"

    seed_data_dir(props)

    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in orphans)
    _check_copy(home, local_service.request.spec.shadow_port)
