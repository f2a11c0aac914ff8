"""Metric overlays: replay a recorded failure trace into one node's live metric stream.

An overlay makes a node *look* like the host a trace was recorded on, through the real
sampling path: :class:`~infra.local.metrics.LocalMetricsCollector` takes its real reading and
then replaces the metrics the trace carries with the trace's values at the overlay's clock.
Everything else (restarts, replication lag, any metric the trace lacks) stays real. The demo
and tests use it to show a realistic degradation without breaking a real disk.

Documented format: one JSON file per node, ``<state_dir>/metric-overlays/port-<port>.json``
(the node is the PostgreSQL port it listens on, so an overlay follows the host, not the
service, across a cutover)::

    {
      "trace_csv": "/abs/path/trace.csv",   # any CSV models.trace.load_trace reads
      "time_column": "timestamp",
      "columns": {"cpu_percent": "cpu_percent", ...},   # CSV column -> canonical metric
      "speedup": 300.0,        # trace seconds per wall second
      "wall_start": 1795000000.0,  # epoch seconds when the trace's first row plays
      "trace_start": null      # trace time played at wall_start (default: first row)
    }

Why the overlay also moves the sample's timestamp: the model's features are defined over time
windows of 30 minutes and 3 hours. A trace recorded at 5-minute steps replayed 300 times faster
than real time therefore has to carry its own (virtual) clock, ``wall_start + elapsed *
speedup``, or a 3-hour precursor squeezed into 36 seconds would look like noise. The virtual
clock starts at ``wall_start`` and only runs ahead of real time, so timestamps stay increasing.
After the trace's last row the last row is held. Removing the file ends the overlay (the
watcher starts a fresh window when a node's timestamps go backwards).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.trace import Trace, TraceError, load_trace

OVERLAY_FOLDER = "metric-overlays"


@dataclass(frozen=True)
class OverlayReading:
    """What an overlay says about a node at one moment."""

    timestamp: float
    """Virtual epoch seconds to stamp the sample with."""
    trace_time: float
    """Trace time of the row played."""
    values: dict[str, float]
    """Canonical metric → value from the trace (metrics with no value in this row left out)."""


def overlay_path(state_dir: Path, port: int) -> Path:
    """Where the overlay of the node listening on ``port`` lives."""
    return state_dir / OVERLAY_FOLDER / f"port-{port}.json"


def write_overlay(
    state_dir: Path,
    port: int,
    trace_csv: Path,
    columns: dict[str, str],
    *,
    speedup: float,
    wall_start: float,
    time_column: str = "timestamp",
    trace_start: float | None = None,
) -> Path:
    """Install (or replace) the overlay of the node on ``port``; checks the trace loads first.

    Raises:
        TraceError: the trace cannot be used (the message names the problem).
        ValueError: ``speedup`` is not a positive number.
    """
    if not (math.isfinite(speedup) and speedup > 0):
        raise ValueError(f"speedup must be a positive number, not {speedup}")
    load_trace(trace_csv, time_column, list(columns.items()))  # refuse a bad trace now
    path = overlay_path(state_dir, port)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "trace_csv": str(trace_csv.resolve()), "time_column": time_column, "columns": columns,
        "speedup": speedup, "wall_start": wall_start, "trace_start": trace_start,
    }
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(body, indent=2))
    temp.replace(path)  # a collector never reads half a file
    return path


def remove_overlay(state_dir: Path, port: int) -> None:
    """End the overlay of the node on ``port`` (idempotent)."""
    overlay_path(state_dir, port).unlink(missing_ok=True)


class OverlayReader:
    """Reads one node's overlay file, reloading it only when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._config: dict[str, object] = {}
        self._trace: Trace | None = None

    def read(self, now: float | None = None) -> OverlayReading | None:
        """The trace row playing at ``now`` (default: the current time), or ``None`` when no
        overlay is installed or it has not started yet.

        Raises:
            TraceError: the installed overlay is unusable (malformed file, bad trace).
        """
        now = time.time() if now is None else now
        if not self._load():
            return None
        assert self._trace is not None
        config, trace = self._config, self._trace
        wall_start, speedup = float(config["wall_start"]), float(config["speedup"])  # type: ignore[arg-type]
        elapsed = now - wall_start
        if elapsed < 0:
            return None
        first = config.get("trace_start")
        start = float(trace.times[0]) if first is None else float(first)  # type: ignore[arg-type]
        trace_time = start + elapsed * speedup
        row = max(int(np.searchsorted(trace.times, trace_time, side="right")) - 1, 0)
        values = {
            metric: float(column[row])
            for metric, column in trace.values.items()
            if not math.isnan(column[row])
        }
        return OverlayReading(wall_start + elapsed * speedup, float(trace.times[row]), values)

    def _load(self) -> bool:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._trace = None, None
            return False
        stamp = (status.st_mtime, status.st_size)
        if stamp == self._stamp and self._trace is not None:
            return True
        try:
            config = json.loads(self.path.read_text())
            columns = list(dict(config["columns"]).items())
            trace = load_trace(Path(config["trace_csv"]), str(config["time_column"]), columns)
            float(config["speedup"]), float(config["wall_start"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            if isinstance(err, TraceError):
                raise
            raise TraceError(f"{self.path}: not a usable metric overlay ({err})") from err
        self._stamp, self._config, self._trace = stamp, config, trace
        return True
