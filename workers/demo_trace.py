"""The demo's failure: a recorded disk-degradation trace, replayed into the primary's metrics.

The trace is one host of the synthetic fleet the model is evaluated on (``models/synthetic``,
mode ``disk_degradation``: disk latency grows exponentially for about two hours, then I/O
stalls and errors), recorded at 5-minute steps and written as a plain CSV. It is not part of
the model's training fleet (other seed). Its healthy prefix is long enough to cover the
shadow's provisioning and a steady-state window; the replay speed makes one sample of the
fleet watcher (one second) one trace step (five minutes).

Why not a NAB series: the model does not generalise to NAB series it has not seen (issue 5's
closing note: 0/20 leave-series-out episodes), so a NAB replay would show the plumbing but not
a prediction. The synthetic mode is one the model recognises, and the demo prints the model's
offline verdict on the very file it replays before it starts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.policy import Policy
from models.predictor import Predictor
from models.scoring import score_series
from models.synthetic import FleetConfig, generate_fleet

TRACE_SEED = 7
"""Fleet seed of the recorded host (training uses other seeds)."""
TRACE_HOST = 7
"""Index of the host in that fleet; its first incident is a disk degradation."""
TRACE_MODE = "disk_degradation"
STEP_S = 300.0
"""The trace's sampling step."""
COLUMNS = {
    "cpu_percent": "cpu_percent", "memory_percent": "memory_percent",
    "disk_latency_ms": "disk_latency_ms", "network_bytes": "network_bytes",
    "request_latency_ms": "request_latency_ms", "requests_per_second": "requests_per_second",
    "error_rate": "error_rate",
}
"""CSV column → metric. Restarts and replication lag stay real (the overlay leaves them)."""


@dataclass(frozen=True)
class DemoTrace:
    """The replayed trace and the moments that matter on its clock."""

    csv_path: Path
    """The CSV written for the overlay."""
    start: float
    """Trace time of the first row (epoch seconds on the trace's clock)."""
    onset: float
    """When the degradation starts."""
    failure_at: float
    """When the host fails (I/O stalls, errors)."""
    end: float
    """Trace time of the last row."""

    def wall_time(self, trace_time: float, wall_start: float, speedup: float) -> float:
        """Wall-clock moment at which the overlay plays ``trace_time``."""
        return wall_start + (trace_time - self.start) / speedup


@dataclass(frozen=True)
class OfflineVerdict:
    """What the model says about the trace when it is scored row by row, before the demo."""

    first_migrate_at: float | None
    """Trace time of the first ``migrate`` decision (``None``: it never fires)."""
    lead_time_s: float | None
    """``failure_at - first_migrate_at`` on the trace's clock."""
    healthy_max_score: float
    """Highest readiness score before the degradation starts (false-alarm margin)."""


def build_trace(out_dir: Path, healthy_hours: float) -> DemoTrace:
    """Write the trace CSV: ``healthy_hours`` before the onset, through two steps past the
    failure, every metric of :data:`COLUMNS`, 5-minute steps."""
    config = FleetConfig(
        instances=TRACE_HOST + 1, days=3, seed=TRACE_SEED, benign_events_per_day=0.5,
        metric_absent_probability=0.0, other_only_probability=0.0, jitter_s=0.0,
        sample_missing_probability=0.0, gaps_per_day=0.0, corrupt_probability=0.0,
    )
    host = generate_fleet(config)[TRACE_HOST]
    incident = next(i for i in host.incidents if i.mode == TRACE_MODE)
    start = incident.onset - healthy_hours * 3600
    if start < host.times[0]:
        raise ValueError(f"healthy_hours {healthy_hours} is longer than the recorded history")
    keep = (host.times >= start) & (host.times <= incident.failure_at + 2 * STEP_S)
    times = host.times[keep]
    columns = [host.values[metric][keep] for metric in COLUMNS.values()]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "trace.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["timestamp", *COLUMNS])
        for row, moment in enumerate(times.tolist()):
            writer.writerow([f"{moment:.0f}", *(f"{float(c[row]):.6g}" for c in columns)])
    return DemoTrace(path, float(times[0]), incident.onset, incident.failure_at, float(times[-1]))


def offline_verdict(trace: DemoTrace, predictor: Predictor, policy: Policy,
                    window_samples: int) -> OfflineVerdict:
    """Score the trace as the watcher will (same window length, same policy), offline."""
    from models.trace import load_trace  # pandas is only needed here

    loaded = load_trace(trace.csv_path, "timestamp", list(COLUMNS.items()))
    scores = score_series(loaded.times, loaded.values, predictor, policy=policy,
                          max_samples=window_samples)
    fired = [moment for moment, decision in zip(loaded.times.tolist(), scores.decisions,
                                                 strict=True) if decision.action == "migrate"]
    healthy = loaded.times < trace.onset
    healthy_max = float(np.nanmax(scores.readiness_score[healthy])) if healthy.any() else 0.0
    first = fired[0] if fired else None
    return OfflineVerdict(first, trace.failure_at - first if first is not None else None,
                          healthy_max)
