"""Metric overlays: replay a recorded failure trace into one node's live metric stream.

An overlay makes a node *look* like the host a trace was recorded on, through the real
sampling path: the local fleet observer takes its real reading and :class:`OverlayObserver`
(which only the demo's worker uses) replaces the metrics the trace carries with the trace's
values at the overlay's clock.
Everything else (restarts, replication lag, any metric the trace lacks) stays real. The demo
and tests use it to show a realistic degradation without breaking a real disk.

An *exclusive* overlay (``"exclusive": true``) is the node's whole metric stream instead: the
sample carries the trace's values and nothing of the real reading but its liveness. The demo
replays the ASD incident this way. Those servers' metrics were recorded without names, so
adding this machine's real CPU, memory and request rates to them makes an instance nobody
recorded: on the demo's trace the model migrates 80 minutes before the failure point on the
19 recorded columns alone and not at all with a local server's named metrics added (measured
offline, ``workers/demo_trace.py``).

Documented format: one JSON file per node, ``<state_dir>/metric-overlays/<node>.json``, the
node named as its fleet observer names it (``Located.identity``): ``port-<port>`` on the local
platform (the PostgreSQL port), ``at-<address>-<port>`` on agent hosts. An overlay follows the
server, not the service, across a cutover::

    {
      "trace_csv": "/abs/path/trace.csv",   # any CSV models.trace.load_trace reads
      "time_column": "timestamp",
      "columns": {"cpu_percent": "cpu_percent", ...},   # CSV column -> canonical metric
      "speedup": 300.0,        # trace seconds per wall second
      "wall_start": 1795000000.0,  # epoch seconds when the trace's first row plays
      "trace_start": null,     # trace time played at wall_start (default: first row)
      "exclusive": false       # true: the trace replaces the whole reading
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

import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.shadow import PlatformRequest
from infra.platform import FleetObserver, Liveness, Located, NodeReading, ScheduledEvent
from models.metrics import MetricSample
from models.trace import Trace, TraceError, load_trace

log = logging.getLogger(__name__)

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
    exclusive: bool = False
    """The trace is the node's whole metric stream (nothing of the real reading is kept)."""


def overlay_path(state_dir: Path, node: int | str) -> Path:
    """Where the overlay of ``node`` lives: a port (the local platform's identity of a node)
    or an ``address:port`` identity (agent hosts)."""
    identity = str(node)
    if identity.isdigit():
        return state_dir / OVERLAY_FOLDER / f"port-{identity}.json"
    address, _, port = identity.rpartition(":")
    if not (port.isdigit() and re.fullmatch(r"[0-9a-f.:]+", address)):
        raise ValueError(f"{identity!r} names no node: a port or address:port is expected")
    return state_dir / OVERLAY_FOLDER / f"at-{address.replace(':', '_')}-{port}.json"


def write_overlay(
    state_dir: Path,
    node: int | str,
    trace_csv: Path,
    columns: dict[str, str],
    *,
    speedup: float,
    wall_start: float,
    time_column: str = "timestamp",
    trace_start: float | None = None,
    exclusive: bool = False,
) -> Path:
    """Install (or replace) the overlay of ``node`` (see :func:`overlay_path`); checks the
    trace loads first.

    Raises:
        TraceError: the trace cannot be used (the message names the problem).
        ValueError: ``speedup`` is not a positive number, or ``node`` names no node.
    """
    if not (math.isfinite(speedup) and speedup > 0):
        raise ValueError(f"speedup must be a positive number, not {speedup}")
    load_trace(trace_csv, time_column, list(columns.items()))  # refuse a bad trace now
    path = overlay_path(state_dir, node)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "trace_csv": str(trace_csv.resolve()), "time_column": time_column, "columns": columns,
        "speedup": speedup, "wall_start": wall_start, "trace_start": trace_start,
        "exclusive": exclusive,
    }
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(body, indent=2))
    temp.replace(path)  # a collector never reads half a file
    return path


def remove_overlay(state_dir: Path, node: int | str) -> None:
    """End the overlay of ``node`` (idempotent)."""
    overlay_path(state_dir, node).unlink(missing_ok=True)


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
        return OverlayReading(wall_start + elapsed * speedup, float(trace.times[row]), values,
                              bool(config.get("exclusive", False)))

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


class OverlayObserver(FleetObserver):
    """A fleet observer whose samples carry the overlays installed for their nodes.

    The demo's worker (``workers/demo_worker.py``) wraps the local and the hosts observers
    with it; a production worker never reads overlay files. Everything but :meth:`sample` is
    the wrapped observer's: liveness, standby readiness and routing stay real.
    """

    name = "local"

    def __init__(self, inner: FleetObserver, state_dir: Path) -> None:
        self._inner = inner
        self._state_dir = state_dir
        self._readers: dict[str, OverlayReader] = {}

    def locate(self, instances: Mapping[str, PlatformRequest]) -> dict[str, Located]:
        """As the wrapped observer."""
        return self._inner.locate(instances)

    def sample(self, instances: Mapping[str, PlatformRequest], located: Mapping[str, Located],
               now: float) -> dict[str, NodeReading]:
        """The real reading, with the metrics a replayed trace carries replaced by the trace's
        values and its timestamp moved to the trace's virtual clock."""
        readings = self._inner.sample(instances, located, now)
        for instance_id, reading in readings.items():
            identity = reading.located.identity
            reader = self._readers.setdefault(
                identity, OverlayReader(overlay_path(self._state_dir, identity)))
            readings[instance_id] = NodeReading(reading.located,
                                                _overlaid(reading.sample, reader, now))
        return readings

    def scheduled_events(self, located: Mapping[str, Located]) -> dict[str, list[ScheduledEvent]]:
        """As the wrapped observer."""
        return self._inner.scheduled_events(located)

    def liveness(self, instance: PlatformRequest, located: Located) -> Liveness | None:
        """As the wrapped observer."""
        return self._inner.liveness(instance, located)

    def standby_ready(self, instance: PlatformRequest, located: Located) -> bool:
        """As the wrapped observer."""
        return self._inner.standby_ready(instance, located)


def with_overlays(inner: FleetObserver, state_dir: Path) -> OverlayObserver:
    """``inner`` with the overlays of ``state_dir``; the wrapper answers to ``inner``'s name
    and keeps its liveness pace (class attributes of an observer, so a class is made for it:
    the hosts observer checks four times a second, the local one once)."""
    kind = type(f"Overlay{type(inner).__name__}", (OverlayObserver,),
                {"name": inner.name, "liveness_interval_s": inner.liveness_interval_s})
    observer: OverlayObserver = kind(inner, state_dir)
    return observer


def _overlaid(sample: MetricSample, reader: OverlayReader, now: float) -> MetricSample:
    try:
        reading = reader.read(now)
    except TraceError as err:
        log.warning("Ignoring the metric overlay %s: %s", reader.path, err)
        return sample
    if reading is None:
        return sample
    if sample.request_latency_ms is None:  # an unreachable node: no values to replace
        return dataclasses.replace(sample, timestamp=reading.timestamp)
    if reading.exclusive:  # the trace is the whole reading
        sample = MetricSample(reading.timestamp, sample.instance_id)
    values: dict[str, Any] = {}
    columns = dict(sample.columns)
    for metric, value in reading.values.items():
        if metric == "network_bytes":  # the trace has the sum; keep the split consistent
            values["network_in_bytes"], values["network_out_bytes"] = value, 0.0
        elif metric in _SAMPLE_FIELDS:
            values[metric] = value
        else:  # a column key of a multi-column trace (``other:m07``): an extra column
            columns[metric] = value
    return dataclasses.replace(sample, timestamp=reading.timestamp, columns=columns, **values)


_SAMPLE_FIELDS = frozenset(f.name for f in dataclasses.fields(MetricSample))
