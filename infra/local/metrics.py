"""Live metrics of a local PostgreSQL instance, as platform-neutral :class:`MetricSample`s.

Sources, each read once per sample:

- the postmaster's process tree (psutil): CPU % from the change in CPU time between samples,
  memory as the tree's resident set over the machine's memory;
- ``/proc/diskstats`` for the device holding the data directory: mean I/O latency over the
  interval (time spent on I/O ÷ I/Os completed);
- PostgreSQL itself: a ``SELECT 1`` round trip as request latency, commits and rollbacks from
  ``pg_stat_database`` for request rate and error rate, ``pg_postmaster_start_time()`` for
  restarts;
- HAProxy: bytes in and out of the instance's server (HAProxy accounts a TCP session's bytes
  when it closes, so long-lived connections show up late);
- replication lag: bytes the node's standbys have yet to replay (``pg_stat_replication``),
  unless a status function is given;
- resources that run out, for the exhaustion forecast (``models/exhaustion.py``): the data
  directory's filesystem in use (``disk_used_percent``), client connections against
  ``max_connections`` (``connections_percent``), the oldest unfrozen transaction ID's age
  against the wraparound limit (``xid_age_percent``), and WAL held back by replication slots
  against its budget (``wal_retained_percent``: ``max_slot_wal_keep_size``, or when that is
  unlimited the WAL's share of what the disk could still hold).

A replayed trace (the demo's metric overlay) is laid over these readings by the demo worker's
fleet observer (``infra/local/metric_overlay.py``), not here: a production collector never
looks for overlay files.

The data directory, which selects the disk, is asked of the server itself when not given (the
fleet watcher knows ports, not paths). Rates need two readings, so the first sample of a
collector leaves them empty (the model copes with missing metrics). Anything unreachable is
simply absent from the sample.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

from infra.local.haproxy import HAProxyManager
from infra.local.postgres import PgEndpoint
from models.metrics import MetricSample

log = logging.getLogger(__name__)

_QUERY = (
    "SELECT sum(xact_commit), sum(xact_rollback), pg_postmaster_start_time()::text,"
    " pg_backend_pid(),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE (SELECT max(pg_wal_lsn_diff("
    "pg_current_wal_lsn(), replay_lsn)) FROM pg_stat_replication) END"
    " FROM pg_stat_database"
)
_RESOURCES = (
    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
    " current_setting('max_connections')::float,"
    " (SELECT max(age(datfrozenxid)) FROM pg_database),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE (SELECT max(pg_wal_lsn_diff("
    "pg_current_wal_lsn(), restart_lsn)) FROM pg_replication_slots"
    " WHERE restart_lsn IS NOT NULL) END,"
    " (SELECT setting::float FROM pg_settings WHERE name = 'max_slot_wal_keep_size')"
)
"""Connections in use and allowed, the oldest database's transaction-ID age, WAL retained by
slots (bytes) and the slots' WAL budget (MB, -1 = unlimited; absent before PostgreSQL 13)."""

XID_WRAPAROUND_LIMIT = 2**31 - 3_000_000
"""Transaction-ID age at which PostgreSQL stops assigning IDs (it keeps 3 million in reserve
for the vacuum that rescues it)."""


@dataclass
class _Counters:
    at: float
    cpu_seconds: float
    io_ms: float | None
    ios: float | None
    commits: float
    rollbacks: float
    bytes_in: float
    bytes_out: float


class LocalMetricsCollector:
    """Samples one instance; keep one collector per instance so rates have a baseline."""

    def __init__(
        self,
        instance_id: str,
        endpoint: PgEndpoint,
        *,
        data_dir: Path | None = None,
        haproxy: HAProxyManager | None = None,
        server_name: str | None = None,
        replication_lag: Callable[[], int | None] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.haproxy = haproxy
        self.server_name = server_name or instance_id
        self.replication_lag = replication_lag
        self._data_dir_asked = data_dir is not None
        self._previous: _Counters | None = None
        self._start_time: str | None = None
        self.restarts = 0

    def sample(self) -> MetricSample:
        """One reading now; unreachable sources leave their fields empty."""
        now = time.time()
        database = self._database()
        if database is None:
            return MetricSample(timestamp=now, instance_id=self.instance_id)
        (latency_ms, commits, rollbacks, start_time, (cpu_seconds, rss), standby_lag,
         resources) = database
        if self._start_time is not None and start_time != self._start_time:
            self.restarts += 1
        self._start_time = start_time
        io_ms, ios = _disk_counters(self.data_dir)
        bytes_in, bytes_out = self._router_bytes()
        current = _Counters(now, cpu_seconds, io_ms, ios, commits, rollbacks, bytes_in, bytes_out)
        previous, self._previous = self._previous, current
        values: dict[str, float | None] = {
            "memory_percent": 100.0 * rss / psutil.virtual_memory().total,
            "request_latency_ms": latency_ms,
            "restarts": float(self.restarts),
            "replication_lag_bytes": (
                _optional(self.replication_lag) if self.replication_lag else standby_lag
            ),
            **_exhaustion_inputs(resources, self.data_dir),
        }
        if previous is not None and current.at > previous.at:
            elapsed = current.at - previous.at
            cpu = (current.cpu_seconds - previous.cpu_seconds) / elapsed
            values["cpu_percent"] = 100.0 * max(cpu, 0.0) / (psutil.cpu_count() or 1)
            if None not in (current.ios, previous.ios, current.io_ms, previous.io_ms):
                done = float(current.ios) - float(previous.ios)  # type: ignore[arg-type]
                spent = float(current.io_ms) - float(previous.io_ms)  # type: ignore[arg-type]
                values["disk_latency_ms"] = spent / done if done > 0 else 0.0
            transactions = (current.commits - previous.commits) + (
                current.rollbacks - previous.rollbacks
            )
            values["requests_per_second"] = transactions / elapsed
            failed = current.rollbacks - previous.rollbacks
            values["error_rate"] = failed / transactions if transactions > 0 else 0.0
            values["network_in_bytes"] = current.bytes_in - previous.bytes_in
            values["network_out_bytes"] = current.bytes_out - previous.bytes_out
        return MetricSample(now, self.instance_id, columns={}, **values)

    def _database(
        self,
    ) -> tuple[float, float, float, str, tuple[float, float], float | None,
               tuple[Any, ...] | None] | None:
        try:
            started = time.perf_counter()
            with self.endpoint.connect(timeout_s=2) as conn:
                conn.execute("SELECT 1").fetchone()
                latency_ms = (time.perf_counter() - started) * 1000
                row = conn.execute(_QUERY).fetchone()
                if row is None:
                    return None
                resources = _resources(conn)
                if not self._data_dir_asked:
                    self._data_dir_asked = True
                    self.data_dir = _data_directory(conn)
                # The postmaster is found through our own backend, so only while it lives: once
                # the connection closes it may be gone (the CPU and memory then read 0).
                usage = _tree_usage(int(row[3]))
        except psycopg.Error:
            return None
        lag = float(row[4]) if row[4] is not None else None
        return (latency_ms, float(row[0] or 0), float(row[1] or 0), str(row[2]), usage, lag,
                resources)

    def _router_bytes(self) -> tuple[float, float]:
        if self.haproxy is None:
            return 0.0, 0.0
        try:
            stats = self.haproxy.stats(self.instance_id).get(self.server_name)
        except Exception:
            return 0.0, 0.0
        return (float(stats.bytes_in), float(stats.bytes_out)) if stats else (0.0, 0.0)


def _resources(conn: psycopg.Connection) -> tuple[Any, ...] | None:
    """The row of :data:`_RESOURCES`; ``None`` when the server refuses it (an old version, a
    role without access), so the other metrics still arrive."""
    try:
        with conn.transaction():  # a failed query must not poison the connection
            return conn.execute(_RESOURCES).fetchone()
    except psycopg.Error:
        return None


def _exhaustion_inputs(resources: tuple[Any, ...] | None,
                       data_dir: Path | None) -> dict[str, float | None]:
    """Used share of every resource that runs out, in percent (absent: ``None``)."""
    disk = _disk_usage(data_dir)
    used_percent = 100.0 * disk[0] / disk[1] if disk and disk[1] > 0 else None
    out: dict[str, float | None] = {"disk_used_percent": used_percent}
    if resources is None:
        return out
    connections, max_connections, xid_age, retained, keep_size_mb = resources
    if connections is not None and max_connections:
        out["connections_percent"] = 100.0 * float(connections) / float(max_connections)
    if xid_age is not None:
        out["xid_age_percent"] = 100.0 * float(xid_age) / XID_WRAPAROUND_LIMIT
    if retained is not None:
        retained = float(retained)
        if keep_size_mb is not None and float(keep_size_mb) > 0:
            budget: float | None = float(keep_size_mb) * 2**20
        else:
            # Unlimited: the slots may keep WAL until the disk is full.
            budget = retained + disk[2] if disk else None
        if budget:
            out["wal_retained_percent"] = 100.0 * retained / budget
    return out


def _disk_usage(data_dir: Path | None) -> tuple[float, float, float] | None:
    """Used, total and free bytes of the filesystem holding ``data_dir``."""
    if data_dir is None:
        return None
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError:
        return None
    return float(usage.used), float(usage.total), float(usage.free)


def _data_directory(conn: psycopg.Connection) -> Path | None:
    """The server's data directory; ``None`` for a role not allowed to read it."""
    try:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return Path(row[0]) if row and row[0] else None


def _tree_usage(backend_pid: int) -> tuple[float, float]:
    """CPU seconds and resident bytes of the postmaster (our backend's parent) and children."""
    try:
        postmaster = psutil.Process(backend_pid).parent()
        if postmaster is None:
            return 0.0, 0.0
        children = postmaster.children(recursive=True)
        # A backend that exited between two samples (one connection per request is common)
        # takes its CPU time with it; the kernel adds it to the postmaster's reaped-children
        # times, so counting those keeps the total monotonic and the rate honest.
        own = postmaster.cpu_times()
        cpu = own.user + own.system + own.children_user + own.children_system
        rss = float(postmaster.memory_info().rss)
    except psutil.Error:
        return 0.0, 0.0
    for process in children:
        try:
            times = process.cpu_times()
            cpu += times.user + times.system
            rss += process.memory_info().rss
        except psutil.Error:
            continue  # a backend that just exited
    return cpu, rss


def _disk_counters(data_dir: Path | None) -> tuple[float | None, float | None]:
    """Milliseconds spent on I/O and I/Os completed on the data directory's device; ``None``
    when the device is not a block device listed in ``/proc/diskstats`` (overlay, tmpfs)."""
    if data_dir is None or not data_dir.exists():
        return None, None
    device = os.stat(data_dir).st_dev
    major, minor = os.major(device), os.minor(device)
    try:
        lines = Path("/proc/diskstats").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split()
        if len(parts) >= 11 and int(parts[0]) == major and int(parts[1]) == minor:
            reads, read_ms, writes, write_ms = (float(parts[i]) for i in (3, 6, 7, 10))
            return read_ms + write_ms, reads + writes
    return None, None


def _optional(read: Callable[[], int | None] | None) -> float | None:
    if read is None:
        return None
    try:
        value = read()
    except Exception:
        return None
    return float(value) if value is not None else None
