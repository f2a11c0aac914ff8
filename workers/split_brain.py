"""Watching a cutover from the outside: split-brain monitor and client-visible blackout.

The monitor keeps one session per server and asks each, over and over, whether it would
accept a write. One poll can never see two servers at the same instant, so it reads them in
the order A, B, A, B and reports a split brain only when a server was writable on both
sides of the other's writable answer (A-B-A or B-A-B): then both were writable at the
middle read. A cutover's transitions (writable → fenced, standby → primary) cannot fake
that pattern, so every observation is real.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import psycopg

from infra.local.fencing import NodeSessions
from infra.local.haproxy import HAProxyManager
from infra.local.postgres import PgEndpoint

_WRITABLE = (
    "SELECT NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = 'off'"
)


@dataclass
class MonitorReport:
    """What the monitor saw."""

    samples: int = 0
    """A-B-A-B rounds completed."""
    split_brain_observations: int = 0
    """Rounds proving two writable servers at one instant."""
    router_both_weighted: int = 0
    """Router reads with traffic weight on both servers."""
    events: list[str] = field(default_factory=list)
    """A line per observation (capped)."""


class SplitBrainMonitor:
    """Background poller of two servers and the router."""

    def __init__(
        self,
        endpoints: dict[str, PgEndpoint],
        haproxy: HAProxyManager,
        service: str,
        *,
        interval_s: float = 0.002,
    ) -> None:
        if len(endpoints) != 2:
            raise ValueError("the monitor watches exactly two servers")
        self.endpoints = endpoints
        self.haproxy = haproxy
        self.service = service
        self.interval_s = interval_s
        self.report = MonitorReport()
        self._sessions = NodeSessions()
        """One session per server, each statement under a deadline: a frozen server must read
        as not writable now, not stall the monitor until it thaws."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="split-brain-monitor", daemon=True)

    def __enter__(self) -> SplitBrainMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> MonitorReport:
        """Stop polling and return the report."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sessions.close()
        return self.report

    def _writable(self, name: str) -> bool:
        try:
            row = self._sessions.run(self.endpoints[name], _WRITABLE, timeout_s=0.5)
        except psycopg.Error:
            return False  # unreachable, hung or terminated: it cannot take a write now
        return bool(row and row[0])

    def _run(self) -> None:
        first, second = list(self.endpoints)
        report = self.report
        while not self._stop.is_set():
            a1, b2 = self._writable(first), self._writable(second)
            a3, b4 = self._writable(first), self._writable(second)
            report.samples += 1
            if (a1 and b2 and a3) or (b2 and a3 and b4):
                report.split_brain_observations += 1
                if len(report.events) < 20:
                    report.events.append(f"{time.monotonic():.3f}: {first} and {second} writable")
            if report.samples % 10 == 0:
                try:
                    weights = self.haproxy.weights(self.service)
                except Exception:  # the router being restarted is not a split brain
                    weights = {}
                if sum(1 for name in self.endpoints if weights.get(name, 0) > 0) > 1:
                    report.router_both_weighted += 1
            time.sleep(self.interval_s)


def blackout_ms(ack_times: list[float], start: float, end: float) -> float:
    """Longest gap between consecutive acknowledged writes that overlaps ``[start, end]``.

    That is the client-visible gap from the last write on the old primary to the first on
    the new one (it includes one normal inter-arrival time, ~7 ms at 150 tx/s).
    """
    times = sorted(ack_times)
    longest = 0.0
    for before, after in itertools.pairwise(times):
        if after >= start and before <= end:
            longest = max(longest, after - before)
    return round(longest * 1000, 2)


def failures_between(failure_times: list[float], start: float, end: float) -> int:
    """Failed client operations in ``[start, end]``."""
    return sum(1 for moment in failure_times if start <= moment <= end)
