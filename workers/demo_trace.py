"""The demo's failure: a real incident recorded on an application server, replayed into the
primary's metrics.

The trace is one incident of the ASD data (``../shared/data/asd``: real servers, 19 unnamed
metrics at 5-minute steps, incidents labelled by their operators from incident reports),
named by :data:`TRACE_SERVER` and :data:`TRACE_INCIDENT`. It is cut from ``healthy_hours``
before the incident's first labelled row (:attr:`DemoTrace.onset`) to two steps after
:attr:`DemoTrace.failure_at`, which is the onset plus 15 minutes: the evaluation's "caught in
time" limit, where the demo fails the primary. The replay speed makes one sample of the fleet
watcher (one second) one trace step (five minutes).

Why this incident: a model trained without :data:`TRACE_SERVER` (its leave-server-out fold,
same training as ``make model``) migrates 55-65 minutes before the incident's first labelled
row at thresholds 20-25 with no false migration on that server's 15 labelled days, and the
shipped model does so about 65 minutes before it when the demo replays
:data:`DEMO_HEALTHY_HOURS` of history (the demo prints its offline verdict on the very file it
replays before it starts). Most ASD incidents are not caught in time by any model here
(docs/model.md, "Why the ASD goal is not met"): this is one that is, not a typical one.

The model needs a day of the instance's own history before its novelty baseline speaks, so
the demo must replay at least :data:`DEMO_HEALTHY_HOURS` hours before the incident; with the
demo's old 12 hours the model stays silent on every ASD incident.

Without the shared data (or with ``--trace synthetic``) the demo replays a host of the
synthetic fleet instead (``models/synthetic``, a disk degradation), and says so in
:attr:`DemoTrace.source`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.policy import Policy
from models.asd import ASD_DIR, asd_available, load_server
from models.predictor import Predictor
from models.scoring import score_series
from models.synthetic import FleetConfig, generate_fleet

TRACE_SERVER = "omi-11"
"""The ASD server the incident was recorded on."""
TRACE_INCIDENT = 2
"""Index of the incident among the server's labelled incidents (time order, from 0): a
"temporal" incident of 170 minutes, 32.7 days into the recording."""
DEMO_HEALTHY_HOURS = 40.0
"""Trace hours to replay before the incident (at 300x: 8 minutes of demo). With 30 hours the
shipped model stays below 8 on this incident."""
DEMO_THRESHOLD = 12.0
"""Readiness threshold for the replay. With 19 unnamed metrics the default profile is
60 x the relative probability (the probability above the instance's usual level,
:mod:`models.relative`) plus the local server's real CPU, memory and disk terms (a few
points), so the demo's former 60 would need certainty. On this trace the shipped model's
precursor reads 13-17 from 75 minutes before the onset, while the healthy part before it stays
under 2; the leave-server-out folds chose thresholds of about 5 to 17, 11.7 for this server
(bench/results/eval.json)."""
LEAD_WINDOW_S = 7200.0
"""The last trace hours before the ASD incident's onset that belong to it: the evaluation
counts a migration in them as early, not false, and on this trace the model fires within
them."""
IN_TIME_S = 900.0
"""The primary is failed this long after the incident's first labelled row."""
STEP_S = 300.0
"""The trace's sampling step."""
ASD_COLUMNS = {f"m{i:02d}": f"other:m{i:02d}" for i in range(1, 20)}
"""CSV column → column key of the ASD trace: 19 metrics without names, all ``other``."""
SYNTHETIC_COLUMNS = {
    "cpu_percent": "cpu_percent", "memory_percent": "memory_percent",
    "disk_latency_ms": "disk_latency_ms", "network_bytes": "network_bytes",
    "request_latency_ms": "request_latency_ms", "requests_per_second": "requests_per_second",
    "error_rate": "error_rate",
}
"""CSV column → metric of the synthetic fallback."""
_SYNTHETIC_SEED, _SYNTHETIC_HOST = 7, 7


@dataclass(frozen=True)
class DemoTrace:
    """The replayed trace and the moments that matter on its clock."""

    csv_path: Path
    """The CSV written for the overlay."""
    start: float
    """Trace time of the first row (epoch seconds on the trace's clock)."""
    onset: float
    """When the incident starts (its first labelled row)."""
    failure_at: float
    """When the demo fails the primary."""
    end: float
    """Trace time of the last row."""
    source: str
    """Where the trace comes from, for the summary (server, incident, its type and time)."""
    mode: str
    """``asd_incident`` or ``disk_degradation`` (synthetic)."""
    columns: Mapping[str, str]
    """What the overlay replays: CSV column → column key."""
    lead_window_s: float
    """Trace seconds before :attr:`onset` that already belong to the incident; the demo's
    steady-state cost window ends where they begin (a cutover there is not steady state)."""
    exclusive: bool
    """The trace replaces the node's whole metric stream (the ASD incident: its 19 columns
    are everything recorded of that server, and this machine's own named metrics added to them
    make an instance the model stays silent on); otherwise the metrics it lacks stay real."""

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
    """Highest readiness score before the incident starts (false-alarm margin)."""


TRACE_KINDS = ("asd", "synthetic")
"""What the demo can replay: the real ASD incident (default) or the synthetic disk degradation
(fast: the model predicts it after a few hours of history; the end-to-end test uses it)."""


def build_trace(out_dir: Path, healthy_hours: float, kind: str = "asd") -> DemoTrace:
    """Write the trace CSV: ``healthy_hours`` before the onset through two steps past the
    failure point, every column of the ASD server (``kind="synthetic"``, or the shared data
    absent: :func:`build_synthetic_trace`), 5-minute steps."""
    if kind not in TRACE_KINDS:
        raise ValueError(f"trace kind {kind!r}: use one of {', '.join(TRACE_KINDS)}")
    if kind == "synthetic" or not asd_available():
        return build_synthetic_trace(out_dir, healthy_hours)
    server = load_server(ASD_DIR / f"{TRACE_SERVER}.csv")
    incident = server.incidents[TRACE_INCIDENT]
    start = incident.start - healthy_hours * 3600
    if start < server.times[0]:
        raise ValueError(f"healthy_hours {healthy_hours} is longer than the recorded history")
    failure_at = incident.start + IN_TIME_S
    keep = (server.times >= start) & (server.times <= failure_at + 2 * STEP_S)
    times = server.times[keep]
    columns = [server.values[key][keep] for key in ASD_COLUMNS.values()]
    path = _write(out_dir, times, list(ASD_COLUMNS), columns)
    when = f"{(incident.start - server.times[0]) / 86400:.1f} days into its recording"
    source = (f"ASD {TRACE_SERVER}, incident {TRACE_INCIDENT + 1} of {len(server.incidents)} "
              f"({incident.kind}, {(incident.end - incident.start) / 60 + 5:.0f} min long, "
              f"{when})")
    return DemoTrace(path, float(times[0]), incident.start, failure_at, float(times[-1]),
                     source, "asd_incident", dict(ASD_COLUMNS), LEAD_WINDOW_S,
                     exclusive=True)


def build_synthetic_trace(out_dir: Path, healthy_hours: float) -> DemoTrace:
    """A disk degradation of a synthetic host with named metrics: the demo's fallback and its
    fast variant, and what the scale bench replays on every instance (its metrics have names
    that fill a whole sample)."""
    config = FleetConfig(
        instances=_SYNTHETIC_HOST + 1, days=3, seed=_SYNTHETIC_SEED, benign_events_per_day=0.5,
        metric_absent_probability=0.0, other_only_probability=0.0, jitter_s=0.0,
        sample_missing_probability=0.0, gaps_per_day=0.0, corrupt_probability=0.0,
    )
    host = generate_fleet(config)[_SYNTHETIC_HOST]
    incident = next(i for i in host.incidents if i.mode == "disk_degradation")
    start = incident.onset - healthy_hours * 3600
    if start < host.times[0]:
        raise ValueError(f"healthy_hours {healthy_hours} is longer than the recorded history")
    keep = (host.times >= start) & (host.times <= incident.failure_at + 2 * STEP_S)
    times = host.times[keep]
    columns = [host.values[metric][keep] for metric in SYNTHETIC_COLUMNS.values()]
    path = _write(out_dir, times, list(SYNTHETIC_COLUMNS), columns)
    return DemoTrace(path, float(times[0]), incident.onset, incident.failure_at,
                     float(times[-1]), "synthetic fleet (seed 7, host 7), a disk degradation",
                     "disk_degradation", dict(SYNTHETIC_COLUMNS), 0.0,
                     exclusive=False)


def _write(out_dir: Path, times: np.ndarray, names: list[str],
           columns: list[np.ndarray]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "trace.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["timestamp", *names])
        for row, moment in enumerate(times.tolist()):
            writer.writerow([f"{moment:.0f}", *(f"{float(c[row]):.6g}" for c in columns)])
    return path


def offline_verdict(trace: DemoTrace, predictor: Predictor, policy: Policy,
                    window_samples: int) -> OfflineVerdict:
    """Score the trace as the watcher will (same window length, same policy, baselines
    learned from the trace's first row), offline."""
    from models.trace import load_trace  # pandas is only needed here

    loaded = load_trace(trace.csv_path, "timestamp", list(trace.columns.items()))
    scores = score_series(loaded.times, loaded.values, predictor, policy=policy,
                          max_samples=window_samples)
    fired = [moment for moment, decision in zip(loaded.times.tolist(), scores.decisions,
                                                 strict=True) if decision.action == "migrate"]
    healthy = loaded.times < trace.onset
    healthy_max = float(np.nanmax(scores.readiness_score[healthy])) if healthy.any() else 0.0
    first = fired[0] if fired else None
    return OfflineVerdict(first, trace.failure_at - first if first is not None else None,
                          healthy_max)
