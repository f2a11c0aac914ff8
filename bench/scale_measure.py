"""What ``make bench-scale`` measures: process CPU and memory, actions, crossing-to-cutover.

- CPU: user + system seconds a process used over a window (``psutil`` reads
  ``/proc/<pid>/stat``), divided by the window's wall time: percent of one core.
- Memory: resident set size sampled every few seconds in the window; median and max.
- Actions: ``workers.demo_report`` counts billable history events in the window (and takes
  heartbeats from the dev server's ``action`` counter), the same rule as ``make demo``.
- Latency: from the protection's own history, the ``report_risk`` signal that first carried a
  score at or above the threshold after the injection (and the last upward crossing before
  ``migrate``, when the score dipped in between), the one that carried ``migrate``, and the
  ``ChildWorkflowExecutionStarted`` event of the cutover.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

import psutil
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.shadow_stats import summarise


@dataclass
class ProcessWatch:
    """CPU seconds and RSS of one process over a window."""

    name: str
    pid: int
    _process: psutil.Process = field(init=False)
    _cpu0: float = 0.0
    _wall0: float = 0.0
    rss_samples: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._process = psutil.Process(self.pid)

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def begin(self) -> None:
        """Start a window."""
        self._cpu0, self._wall0 = self._cpu(), time.monotonic()
        self.rss_samples = []

    def sample_rss(self) -> None:
        """One memory reading."""
        self.rss_samples.append(int(self._process.memory_info().rss))

    def end(self) -> dict[str, float]:
        """CPU (% of a core) and RSS (MiB) over the window since :meth:`begin`."""
        self.sample_rss()
        wall = time.monotonic() - self._wall0
        cpu_s = self._cpu() - self._cpu0
        mib = [value / 2**20 for value in self.rss_samples]
        return {
            "cpu_percent_of_core": round(100.0 * cpu_s / wall, 1),
            "cpu_seconds": round(cpu_s, 2),
            "wall_s": round(wall, 1),
            "rss_mib_median": round(statistics.median(mib), 1),
            "rss_mib_max": round(max(mib), 1),
        }


async def watch_window(watches: list[ProcessWatch], seconds: float,
                       rss_every_s: float = 5.0) -> dict[str, dict[str, float]]:
    """Measure ``watches`` for ``seconds`` of wall time."""
    for watch in watches:
        watch.begin()
        watch.sample_rss()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(rss_every_s, left))
        for watch in watches:
            watch.sample_rss()
    return {watch.name: watch.end() for watch in watches}


@dataclass
class CrossingTimes:
    """One injected instance's path from threshold crossing to cutover start (epoch s)."""

    instance_id: str
    crossed_at: float | None = None
    """Watcher's clock when it sent the first score at or above the threshold."""
    crossing_signalled_at: float | None = None
    """Server time of that signal in the protection's history."""
    final_crossed_at: float | None = None
    """Watcher's clock of the upward crossing that began the run of high readings which led
    to ``migrate`` (later than ``crossed_at`` when the score dipped below in between, which
    restarts the policy's count of consecutive readings)."""
    migrate_signalled_at: float | None = None
    """Server time of the first ``migrate`` decision's signal."""
    cutover_started_at: float | None = None
    """Server time the cutover child workflow started."""


async def crossing_times(client: Client, workflow_id: str, instance_id: str, since: float,
                         threshold: float) -> CrossingTimes:
    """Read the protection's history for the moments after ``since``."""
    result = CrossingTimes(instance_id)
    handle = client.get_workflow_handle(workflow_id)
    was_high = False
    async for event in handle.fetch_history_events():
        moment = event.event_time.ToDatetime().timestamp()
        if moment < since:
            continue
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attributes = event.workflow_execution_signaled_event_attributes
            if attributes.signal_name != "report_risk" or not attributes.input.payloads:
                continue
            body = json.loads(attributes.input.payloads[0].data)
            high = float(body["readiness_score"]) >= threshold
            if result.crossed_at is None and high:
                result.crossed_at, result.crossing_signalled_at = float(body["at"]), moment
            if high and not was_high and result.migrate_signalled_at is None:
                result.final_crossed_at = float(body["at"])
            was_high = high
            if result.migrate_signalled_at is None and body["decision"] == "migrate":
                result.migrate_signalled_at = moment
        elif (event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
              and result.cutover_started_at is None):
            result.cutover_started_at = moment
    return result


def latency_summary(rows: list[CrossingTimes], injected_at: float) -> dict[str, object]:
    """p50/p99/max of each leg over the instances that reached a cutover."""
    def legs(start: str, end: str) -> dict[str, float | int | None]:
        values = [getattr(r, end) - (injected_at if start == "injected" else getattr(r, start))
                  for r in rows
                  if getattr(r, end) is not None
                  and (start == "injected" or getattr(r, start) is not None)]
        return summarise(values)

    return {
        "crossing_to_cutover_start_s": legs("crossed_at", "cutover_started_at"),
        "final_crossing_to_cutover_start_s": legs("final_crossed_at", "cutover_started_at"),
        "migrate_signal_to_cutover_start_s": legs("migrate_signalled_at", "cutover_started_at"),
        "crossing_to_signal_in_history_s": legs("crossed_at", "crossing_signalled_at"),
        "injection_to_crossing_s": legs("injected", "crossed_at"),
        "injection_to_cutover_start_s": legs("injected", "cutover_started_at"),
        "instances_injected": len(rows),
        "instances_cut_over": sum(1 for r in rows if r.cutover_started_at is not None),
    }
