"""The ``scale-double`` platform: a lightweight stand-in for 1,000 instances (bench only).

``make bench-scale`` measures *our* orchestration cost (protection workflows, the fleet
watcher, batched scoring, Temporal) at 1,000 protected instances on one 2-core machine, where
1,000 PostgreSQL pairs cannot run. This double answers provisioning, replication status and
metric samples at once with realistic values, so every Temporal action, signal, upsert and
scoring batch is the product's own.

Why hand-written: it is a test double of our own ``Platform`` contract, not a reusable
component; no library provides one.

It is reachable only from the benchmark: the bench worker builds its activities with
:func:`platforms`, which serves ``local`` specs with the double; no production worker ever
sees it.

Metrics are the demo's recorded host (``workers/demo_trace.py``): every instance replays the
healthy prefix back and forth from its own offset (no jump at the ends, so no false alarm);
an instance named in the injection file switches to the degradation, a few steps before the
model's score crosses the threshold. One sample advances the trace by one 5-minute step (the
model's training cadence) on a virtual clock that only moves forward.
"""

from __future__ import annotations

import csv
import json
import os
import random
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.shadow import Capabilities, Health, NodeFacts, PlatformRequest, ReplicationStatus
from infra.factory import PlatformBuilder, Platforms
from infra.platform import (
    ALIVE,
    FleetObserver,
    Liveness,
    Located,
    NodeReading,
    Platform,
    PlatformContext,
    ProgressCallback,
    ScheduledEvent,
    ShadowInfo,
)
from models.metrics import MetricSample
from workers.demo_trace import STEP_S, SYNTHETIC_COLUMNS

PLATFORM = "scale-double"
"""The double's name (its results say which platform ran)."""
TRACE_FILE = "scale-trace.json"
"""In the state dir: where the trace CSV is and which rows to replay (written by the bench)."""
INJECT_FILE = "scale-inject.json"
"""In the state dir: instances whose metric stream turns to the degradation."""


@dataclass(frozen=True)
class TracePlan:
    """Which rows of the trace healthy and risky instances replay."""

    csv_path: str
    """The recorded trace (``workers.demo_trace.build_synthetic_trace``)."""
    healthy_rows: int
    """Rows before the degradation starts (replayed back and forth)."""
    risky_start_row: int
    """First row an injected instance replays (a few steps before the score crosses)."""

    def write(self, state_dir: Path) -> None:
        """Save for the worker process."""
        (state_dir / TRACE_FILE).write_text(json.dumps(self.__dict__))

    @classmethod
    def read(cls, state_dir: Path) -> TracePlan:
        """Load what the bench wrote."""
        return cls(**json.loads((state_dir / TRACE_FILE).read_text()))


def write_injection(state_dir: Path, instance_ids: list[str]) -> None:
    """Turn these instances' metric streams to the degradation (atomic replace)."""
    tmp = state_dir / (INJECT_FILE + ".tmp")
    tmp.write_text(json.dumps({"instances": instance_ids}))
    os.replace(tmp, state_dir / INJECT_FILE)


class MetricStream:
    """The trace in memory plus the injection switch, shared by every instance's collector."""

    def __init__(self, state_dir: Path) -> None:
        self.plan = TracePlan.read(state_dir)
        with open(self.plan.csv_path, newline="") as source:
            rows = list(csv.DictReader(source))
        self.start = float(rows[0]["timestamp"])
        self.rows = [{name: float(row[name]) for name in SYNTHETIC_COLUMNS} for row in rows]
        self._inject_path = state_dir / INJECT_FILE
        self._inject_mtime = 0.0
        self._injected: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def injected(self) -> frozenset[str]:
        """Instances switched to the degradation (file re-read when it changes)."""
        with self._lock:
            try:
                mtime = self._inject_path.stat().st_mtime
            except FileNotFoundError:
                return self._injected
            if mtime != self._inject_mtime:
                self._inject_mtime = mtime
                body = json.loads(self._inject_path.read_text())
                self._injected = frozenset(body["instances"])
            return self._injected


class DoubleCollector:
    """One instance's metric stream, shaped like ``LocalMetricsCollector`` (``instance_id``,
    ``server_name``, ``sample()``)."""

    def __init__(self, instance_id: str, stream: MetricStream) -> None:
        self.instance_id = instance_id
        self.server_name = instance_id
        """The node sampled (the double never cuts over, so always the original primary)."""
        self._stream = stream
        seed = zlib.crc32(instance_id.encode())
        self._offset = seed % (2 * stream.plan.healthy_rows)
        self._random = random.Random(seed)
        self._taken = 0
        self._risky_taken = 0

    def sample(self) -> MetricSample:
        """The next reading, one trace step later on the virtual clock."""
        plan = self._stream.plan
        if self.instance_id in self._stream.injected():
            row = min(plan.risky_start_row + self._risky_taken, len(self._stream.rows) - 1)
            self._risky_taken += 1
        else:
            row = _reflect(self._offset + self._taken, plan.healthy_rows)
        values = self._stream.rows[row]
        self._taken += 1
        return MetricSample(
            timestamp=self._stream.start + self._taken * STEP_S,
            instance_id=self.instance_id,
            cpu_percent=values["cpu_percent"],
            memory_percent=values["memory_percent"],
            disk_latency_ms=values["disk_latency_ms"],
            network_in_bytes=values["network_bytes"] / 2,
            network_out_bytes=values["network_bytes"] / 2,
            request_latency_ms=values["request_latency_ms"],
            requests_per_second=values["requests_per_second"],
            error_rate=values["error_rate"],
            replication_lag_bytes=float(self._random.randint(0, 64 * 1024)),
            restarts=0.0,
        )


def _reflect(position: int, length: int) -> int:
    """Walk 0..length-1 back and forth (a ping-pong replay has no discontinuity)."""
    position %= 2 * length
    return position if position < length else 2 * length - 1 - position


class ScaleDoublePlatform(Platform):
    """Answers the platform contract at once with plausible values (bench only).

    Provisioning and destruction succeed immediately; replication streams asynchronously
    with a small lag. The cutover operations raise ``NotImplementedError`` (a non-retryable
    ``Unsupported`` failure): the benchmark measures how fast a threshold crossing *starts* a
    cutover, and the saga's own cost is ``make bench-cutover``'s subject.
    """

    name = PLATFORM
    capabilities = Capabilities()
    _weights: dict[str, dict[str, int]] = {}

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self._random = random.Random(zlib.crc32(instance_id.encode()))

    def provision_shadow(self, on_progress: ProgressCallback | None = None) -> ShadowInfo:
        """Instant: the shadow exists and takes no traffic."""
        self._weights.setdefault(self.instance_id, {self.instance_id: 100, self._shadow(): 0})
        return ShadowInfo(self.instance_id, self._shadow(), {"platform": PLATFORM})

    def destroy_shadow(self, on_progress: ProgressCallback | None = None) -> bool:
        """Forget the shadow."""
        return self._weights.pop(self.instance_id, None) is not None

    def replication_status(self) -> ReplicationStatus:
        """Streaming, asynchronous, a few KiB behind."""
        lag = self._random.randint(0, 64 * 1024)
        return ReplicationStatus("streaming", "async", lag, lag / 5e6, "0/1000000", "0/1000000")

    def inspect_node(self, node: str) -> NodeFacts:
        """A reachable node that could rejoin (a double has no settings to read)."""
        return NodeFacts(node, True, "", True)

    def get_weights(self) -> dict[str, int]:
        """Router weights kept in memory."""
        return dict(self._weights.get(self.instance_id, {}))

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Absolute weights, in memory."""
        self._weights.setdefault(self.instance_id, {}).update(weights)

    def probe(self, node: str) -> Health:
        """Every node answers; the one with traffic is writable."""
        writable = self._weights.get(self.instance_id, {}).get(node, 0) > 0
        return Health(True, writable, in_recovery=not writable)

    def nodes(self) -> tuple[str, str]:
        """``(instance, instance-shadow)``."""
        return self.instance_id, self._shadow()

    def routes_service(self) -> bool:
        """The in-memory router knows the service once provisioned."""
        return self.instance_id in self._weights

    def probe_address(self, node: str) -> tuple[str, int] | None:
        """Nothing to probe in a double."""
        return None

    def _shadow(self) -> str:
        return f"{self.instance_id}-shadow"

    def _unsupported(self, *_: object, **__: object) -> Any:
        raise NotImplementedError(f"{PLATFORM} runs no cutover (bench-cutover measures it)")

    rejoin = retire = fence = unfence = fence_router = close_router_sessions = _unsupported
    stop_node = start_node = promote = final_position = replay_gap = _unsupported
    replication_between = prepare_cutover = write_through_router = _unsupported
    relax_sync = restore_sync = relaxed_by_supervisor = _unsupported


class ScaleDoubleObserver(FleetObserver):
    """The watcher's view of the double: the original primary always serves, and samples come
    from each instance's :class:`DoubleCollector`."""

    name = PLATFORM

    def __init__(self, state_dir: Path) -> None:
        self._stream = MetricStream(state_dir)
        self._collectors: dict[str, DoubleCollector] = {}

    def locate(self, instances: Mapping[str, PlatformRequest]) -> dict[str, Located]:
        """The original primary of each (the double never cuts over)."""
        return {iid: Located(iid, iid, iid) for iid in instances}

    def sample(self, instances: Mapping[str, PlatformRequest], located: Mapping[str, Located],
               now: float) -> dict[str, NodeReading]:
        """The next reading of every located instance."""
        readings = {}
        for iid, where in located.items():
            collector = self._collectors.get(iid)
            if collector is None:
                collector = self._collectors[iid] = DoubleCollector(iid, self._stream)
            readings[iid] = NodeReading(where, collector.sample())
        return readings

    def scheduled_events(self, located: Mapping[str, Located]) -> dict[str, list[ScheduledEvent]]:
        """None."""
        return {}

    def liveness(self, instance: PlatformRequest, located: Located) -> Liveness | None:
        """Always alive."""
        return Liveness(ALIVE, located.identity)

    def standby_ready(self, instance: PlatformRequest, located: Located) -> bool:
        """Always ready."""
        return True


def platforms(state_dir: Path) -> Platforms:
    """The bench worker's platforms: the double answers for ``local`` specs (the spec's
    validation knows only the real platforms; the bench's protections name ``local`` with
    ports nothing listens on, and the worker serves them with the double)."""
    builder = PlatformBuilder(
        lambda request, context: ScaleDoublePlatform(request.instance_id),
        lambda context, period: ScaleDoubleObserver(context.state_dir),
        ScaleDoublePlatform.capabilities)
    return Platforms(PlatformContext(None, state_dir), {"local": builder})
