"""The conformance suite's pair on the hosts platform: a primary and its shadow on two
namespace hosts, each made by its host's agent.

The suite's tests are plain functions; the agents are reached through Temporal by a
:class:`~workers.task_runner.TaskRunner`. One lab of two hosts serves a whole module; each
test gets a fresh instance on it (its own ports, router service and Pulumi stack), destroyed
through the agents afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from infra.pulumi_engine import StackDriver
from workers.hosts_lab import PG_PORT, HostsLab, lab_settings
from workers.registry import pulumi_config
from workers.task_runner import TaskRunner


class HostsWorld:
    """Two agent hosts and a task runner for a module's tests."""

    def __init__(self, lab: HostsLab, runner: TaskRunner) -> None:
        self.lab = lab
        self.runner = runner
        self._ports = itertools.count(PG_PORT + 1)

    @property
    def hosts(self) -> tuple[str, str]:
        """(the primaries' host, the shadows' host)."""
        first, second = self.lab.hosts
        return first, second

    def next_port(self) -> int:
        """A port no earlier test's server used on the hosts."""
        return next(self._ports)

    def ensure_primary(self, instance_id: str, port: int) -> None:
        """A fresh primary on the first host, made by its agent."""
        runner = self.runner
        runner.call(self.lab.ensure_primary(runner.client, runner.task_queue, self.hosts[0],
                                            instance_id, port))


@contextlib.contextmanager
def hosts_world(temporal_address: str) -> Iterator[HostsWorld]:
    """Two hosts with their agents on the dev server at ``temporal_address``; all gone after."""
    root = Path(tempfile.mkdtemp(prefix="ssp", dir="/tmp"))  # short: socket paths
    root.chmod(0o755)
    settings = lab_settings(root / "state")
    tag = uuid.uuid4().hex[:4]
    host, port = temporal_address.rsplit(":", 1)
    lab = HostsLab.create(StackDriver(pulumi_config(settings)), root, (f"p{tag}a", f"p{tag}b"),
                          (host, int(port)), disk_mib=256)
    runner: TaskRunner | None = None
    try:
        for name in lab.hosts:
            lab.start_agent(name)
        runner = TaskRunner(temporal_address).start()
        runner.call(lab.wait_for_agents(runner.client))
        yield HostsWorld(lab, runner)
    finally:
        if runner is not None:
            runner.close()
        lab.close()
        shutil.rmtree(root, ignore_errors=True)
