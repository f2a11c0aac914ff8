"""The pieces of the agent's long activities: a new cluster, orphan copies, progress beats.

Kept apart from ``activities/agent.py`` so the activity class reads as the contract's list of
operations; every function here is idempotent on its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from contextlib import AbstractContextManager
from pathlib import Path

import psutil
from temporalio import activity

from activities import agent_pgconf as pgconf
from activities.agent_server import ManagedServer, wait_gone
from activities.heartbeat import heartbeating
from infra.local.postgres import pg_bin, prepare_dir, run_server_tool

BEAT_EVERY_S = 2.0
"""Heartbeat interval of the long activities (the contract's heartbeat timeout is 30 s)."""


def initdb(server: ManagedServer, settings: dict[str, str]) -> None:
    """A new cluster in ``data.initdb`` with the agent's settings and access rules, renamed
    to ``data`` once complete (so a crash mid-way leaves no half cluster in ``data``)."""
    staging = server.home / "data.initdb"
    shutil.rmtree(staging, ignore_errors=True)
    prepare_dir(server.home, mode=0o755)
    prepare_dir(staging)
    run_server_tool([pg_bin("initdb"), "-D", str(staging), "-U", "postgres", "-A", "trust",
                     "--no-instructions", "-E", "UTF8", "--locale=C"])
    pgconf.write_primary_settings(server, settings, data_dir=staging)
    pgconf.write_hba(server, data_dir=staging)
    with contextlib.suppress(FileNotFoundError):
        server.data_dir.rmdir()  # an empty leftover folder (never a non-empty one)
    staging.rename(server.data_dir)


def kill_orphan_copies(home: Path) -> None:
    """SIGKILL the copy processes (``pg_basebackup``, its WAL child, the ``runuser`` around
    them) still working on ``home``'s ``data.partial`` that a previous agent process started:
    their caller is gone, so their copy would never be renamed into place, and they hold the
    copy lock the next attempt needs (``runuser`` holds it too, and stops itself while its
    child is stopped, so it must go as well)."""
    partial = str(home / "data.partial")
    me = os.getpid()
    orphans = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if partial not in cmdline or not any(arg.endswith("pg_basebackup") for arg in cmdline):
            continue
        with contextlib.suppress(psutil.Error):
            if me not in (parent.pid for parent in process.parents()):
                os.kill(process.pid, signal.SIGKILL)
                orphans.append(process)
    if orphans:
        activity.logger.warning("Killed %d copy process(es) left by a previous agent in %s.",
                                len(orphans), home)
        wait_gone(orphans, timeout_s=10.0)


class Progress:
    """What a long activity is doing, heartbeated every :data:`BEAT_EVERY_S` from a thread
    while it blocks in a server tool or waits (the copy's bytes so far while it copies)."""

    def __init__(self, server: ManagedServer) -> None:
        self.server = server
        self.step = "starting"
        """Set by the activity as it goes."""
        self.copying = False
        """Whether ``data.partial`` is being written."""

    def describe(self) -> str:
        """One heartbeat's detail."""
        if self.copying:
            copied = _tree_bytes(self.server.home / "data.partial") // 2**20
            return f"{self.server.node}: copying, {copied} MiB so far"
        return f"{self.server.node}: {self.step}"

    def beating(self, every_s: float = BEAT_EVERY_S) -> AbstractContextManager[None]:
        """Heartbeat :meth:`describe` while the block runs."""
        return heartbeating(self.describe, every_s)


def _tree_bytes(root: Path) -> int:
    """Bytes in the files under ``root`` (0 once it is gone or renamed)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def read_text(path: Path) -> str:
    """``path``'s text, or "" when it cannot be read (to compare before and after a write)."""
    try:
        return path.read_text()
    except OSError:
        return ""

