"""Metric samples collected on the host by its agent (``GET /metrics/<node>``).

The PostgreSQL side (request latency and rate, errors, restarts, disk latency of the data
directory's device, replication lag) comes from ``infra.local.metrics.LocalMetricsCollector``,
wrapped, one collector per server so its rates have a baseline. CPU and memory are the
*host's*: on a namespace host (or a container) everything of the host shares the agent's
cgroup, so the agent reads its own cgroup v1 ``cpuacct`` and ``memory`` controllers when it
runs in one (a path other than ``/``); on a VM, where the agent sits in the root cgroup, it
reads the machine through psutil.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from activities.agent_server import ManagedServer
from infra.local.metrics import LocalMetricsCollector
from models.metrics import MetricSample

_UNLIMITED = 2**60
"""cgroup v1 reports "no memory limit" as a huge number (page-rounded ``LONG_MAX``)."""


def own_cgroup_dir(controller: str, proc: Path = Path("/proc/self")) -> Path | None:
    """Folder of this process's cgroup v1 ``controller`` (``cpuacct``, ``memory``), or
    ``None`` when the process sits in the root cgroup or the controller is not mounted."""
    cgroup_path = None
    for line in _lines(proc / "cgroup"):
        parts = line.split(":", 2)
        if len(parts) == 3 and controller in parts[1].split(","):
            cgroup_path = parts[2]
    if not cgroup_path or cgroup_path == "/":
        return None
    for line in _lines(proc / "mountinfo"):
        fields = line.split()
        if "-" not in fields:
            continue
        tail = fields[fields.index("-") + 1:]
        if len(tail) >= 3 and tail[0] == "cgroup" and controller in tail[2].split(","):
            root, mount_point = fields[3], fields[4]
            relative = os.path.relpath(cgroup_path, root) if root != "/" else cgroup_path
            folder = Path(mount_point) / relative.lstrip("/")
            return folder if folder.is_dir() else None
    return None


@dataclass
class HostUsage:
    """CPU and memory use of the host, in percent (``None`` until two CPU readings)."""

    cpu_percent: float | None
    memory_percent: float | None
    source: str
    """``cgroup`` or ``psutil``."""


class HostUsageReader:
    """The host's CPU (rate between two readings) and memory, from the agent's own cgroup v1
    when it runs in one, else from psutil. Thread-safe."""

    def __init__(self, proc: Path = Path("/proc/self")) -> None:
        self._cpuacct = own_cgroup_dir("cpuacct", proc)
        self._memory = own_cgroup_dir("memory", proc)
        self._lock = threading.Lock()
        self._previous: tuple[float, float] | None = None
        self.read()  # the baseline: the first sample asked for already has a CPU rate

    def read(self) -> HostUsage:
        """CPU since the previous reading, memory now."""
        now = time.monotonic()
        cpu_seconds = self._cpu_seconds()
        with self._lock:
            previous, self._previous = self._previous, (now, cpu_seconds)
        cpu = None
        if previous is not None and now > previous[0]:
            # The cgroup's CPUs are those it may run on; psutil counts the whole machine's.
            cpus = _cpus() if self._cpuacct is not None else (psutil.cpu_count() or 1)
            share = (cpu_seconds - previous[1]) / (now - previous[0]) / cpus
            cpu = min(100.0, max(0.0, 100.0 * share))
        source = "cgroup" if self._cpuacct or self._memory else "psutil"
        return HostUsage(cpu, self._memory_percent(), source)

    def _cpu_seconds(self) -> float:
        if self._cpuacct is not None:
            try:
                return int((self._cpuacct / "cpuacct.usage").read_text()) / 1e9
            except (OSError, ValueError):
                pass
        times = psutil.cpu_times()
        return float(times.user + times.system + getattr(times, "nice", 0.0)
                     + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0))

    def _memory_percent(self) -> float:
        total = psutil.virtual_memory().total
        if self._memory is not None:
            try:
                usage = int((self._memory / "memory.usage_in_bytes").read_text())
                limit = int((self._memory / "memory.limit_in_bytes").read_text())
                stat = dict(line.split() for line in _lines(self._memory / "memory.stat"))
                # Page cache the kernel can drop at once is not memory pressure (as docker
                # stats and the kubelet count it).
                used = usage - int(stat.get("total_inactive_file", 0))
                ceiling = min(limit, total) if limit < _UNLIMITED else total
                return max(0.0, min(100.0, 100.0 * used / ceiling))
            except (OSError, ValueError):
                pass
        return float(psutil.virtual_memory().percent)


class AgentMetrics:
    """One :class:`MetricSample` per call for a server of the host: PostgreSQL's side from a
    wrapped ``LocalMetricsCollector``, CPU and memory of the host. Thread-safe."""

    def __init__(self, host_usage: HostUsageReader | None = None) -> None:
        self._host = host_usage or HostUsageReader()
        self._collectors: dict[tuple[str, int],
                               tuple[LocalMetricsCollector, threading.Lock]] = {}
        self._lock = threading.Lock()

    def sample(self, server: ManagedServer, answers: bool) -> MetricSample:
        """A reading of ``server`` now; ``answers=False`` (a probe just failed) skips the
        database, whose connection would only wait for its timeout."""
        usage = self._host.read()
        if answers:
            with self._lock:
                collector, collector_lock = self._collector(server)
            with collector_lock:  # one reading at a time per server: its rates need order
                sample = collector.sample()
        else:
            sample = MetricSample(timestamp=time.time(), instance_id=server.instance_id())
        return dataclasses.replace(sample, cpu_percent=usage.cpu_percent,
                                   memory_percent=usage.memory_percent)

    def _collector(
        self, server: ManagedServer
    ) -> tuple[LocalMetricsCollector, threading.Lock]:
        key = (server.node, server.port)
        if key not in self._collectors:
            collector = LocalMetricsCollector(server.instance_id(), server.socket_endpoint,
                                              data_dir=server.data_dir, server_name=server.node)
            self._collectors[key] = (collector, threading.Lock())
        return self._collectors[key]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []
