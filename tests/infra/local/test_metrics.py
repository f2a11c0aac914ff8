"""The local collector reads real numbers from a loaded PostgreSQL, HAProxy and /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.local.metric_overlay import (
    OverlayObserver,
    OverlayReader,
    overlay_path,
    remove_overlay,
    write_overlay,
)
from infra.local.metrics import LocalMetricsCollector
from infra.local.observer import LocalObserver
from infra.local.spec import LocalShadowSpec
from infra.platform import Located
from models.metrics import MetricSample, samples_to_arrays, sanitize_all
from models.trace import TraceError
from tests.conftest import LocalService
from workers.settings import Settings
from workers.workload import Writer, prepare_table


def test_samples_reflect_load_and_restarts(local_service: LocalService) -> None:
    """Under 100 writes/s the collector sees transactions, bytes through the router, CPU and
    memory; a restart of the primary is counted."""
    request = local_service.request
    collector = LocalMetricsCollector(
        request.instance_id,
        local_service.primary.endpoint,
        data_dir=local_service.primary.data_dir,
        haproxy=local_service.haproxy,
        replication_lag=lambda: 0,
    )
    prepare_table(local_service.router)
    first = collector.sample()
    assert first.cpu_percent is None  # rates need two readings
    with Writer(local_service.router, rate=100):
        time.sleep(2.0)
        # HAProxy accounts a TCP session's bytes when it closes: open and close a few.
        for _ in range(3):
            with local_service.router.connect() as conn:
                conn.execute("SELECT count(*) FROM pg_class").fetchone()
        loaded = collector.sample()

    assert loaded.requests_per_second is not None and loaded.requests_per_second > 50
    assert loaded.cpu_percent is not None and 0 < loaded.cpu_percent <= 100
    assert loaded.memory_percent is not None and 0 < loaded.memory_percent < 100
    assert loaded.request_latency_ms is not None and loaded.request_latency_ms > 0
    assert (loaded.network_in_bytes or 0) > 0 and (loaded.network_out_bytes or 0) > 0
    assert loaded.error_rate == 0.0 and loaded.replication_lag_bytes == 0.0
    assert loaded.restarts == 0.0
    # What the exhaustion forecast reads: the data directory's disk, connections against
    # max_connections and transaction-ID age against wraparound (a fresh cluster: tiny).
    assert loaded.disk_used_percent is not None and 0 < loaded.disk_used_percent < 100
    assert loaded.connections_percent is not None and 0 < loaded.connections_percent <= 100
    assert loaded.xid_age_percent is not None and 0 <= loaded.xid_age_percent < 1
    # No replication slot on this primary yet: WAL retained by slots is absent, not 0.
    assert loaded.wal_retained_percent is None

    local_service.primary.stop()
    down = collector.sample()
    assert down.cpu_percent is None and down.requests_per_second is None
    local_service.primary.start()
    assert collector.sample().restarts == 1.0

    # Every value the collector produced is believable to the model.
    counts = {"missing": 0, "nan": 0, "negative": 0, "absurd": 0}
    _, columns = samples_to_arrays([first, loaded, down])
    sanitize_all(columns, counts)
    assert counts["negative"] == 0 and counts["absurd"] == 0


def test_data_directory_is_asked_of_the_server(local_service: LocalService) -> None:
    """A collector given only a port (as the fleet watcher's are) finds the data directory
    through the server and reports the disk's I/O latency from its second sample on."""
    request = local_service.request
    collector = LocalMetricsCollector(request.instance_id, local_service.primary.endpoint)
    prepare_table(local_service.router)
    collector.sample()
    assert collector.data_dir is not None
    assert collector.data_dir.resolve() == local_service.primary.data_dir.resolve()
    with Writer(local_service.router, rate=100):
        time.sleep(1.5)
        with local_service.primary.endpoint.connect() as conn:
            conn.execute("CHECKPOINT")  # forces writes to the data directory's disk
        loaded = collector.sample()
    assert loaded.disk_latency_ms is not None and loaded.disk_latency_ms >= 0.0


def test_overlay_replays_a_trace_over_real_readings(
    local_service: LocalService, settings: Settings, tmp_path: Path
) -> None:
    """An installed overlay replaces the metrics its trace carries and stamps the sample with
    the trace's compressed clock; the rest stays real, unless the overlay is exclusive;
    removing it restores real time."""
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "timestamp,cpu,disk\n"
        "1700000000,10,1.5\n1700000300,50,5\n1700000600,90,80\n"
    )
    state_dir = tmp_path / "state-overlay"
    port = local_service.request.spec.primary_port
    now = time.time()
    write_overlay(state_dir, port, trace, {"cpu": "cpu_percent", "disk": "disk_latency_ms"},
                  speedup=300.0, wall_start=now - 1.5)
    reader = OverlayReader(overlay_path(state_dir, port))
    reading = reader.read(now)
    assert reading is not None
    assert reading.values == {"cpu_percent": 50.0, "disk_latency_ms": 5.0}  # row at +450 s
    assert reading.timestamp == (now - 1.5) + 1.5 * 300.0
    assert reader.read(now - 2.0) is None  # not started yet
    held = reader.read(now + 100)
    assert held is not None and held.values["cpu_percent"] == 90.0  # last row is held

    # Started ten seconds ago: 3,000 trace seconds in, past the last row. The demo worker's
    # observer lays it over the real local reading; an unnamed column of a multi-column trace
    # arrives as an extra column of the sample.
    trace.write_text(
        "timestamp,cpu,disk,m07\n"
        "1700000000,10,1.5,3\n1700000300,50,5,4\n1700000600,90,80,7.5\n"
    )
    write_overlay(state_dir, port, trace, {"cpu": "cpu_percent", "disk": "disk_latency_ms",
                                           "m07": "other:m07"},
                  speedup=300.0, wall_start=time.time() - 10)
    request = local_service.request
    observer = OverlayObserver(LocalObserver(settings.state_dir), state_dir)
    spec = LocalShadowSpec.from_request(request, settings.state_dir)
    located = {request.instance_id: Located(request.instance_id, spec.primary_node, str(port))}

    def sample() -> MetricSample:
        readings = observer.sample({request.instance_id: request}, located, time.time())
        return readings[request.instance_id].sample

    overlaid = sample()
    assert overlaid.timestamp > time.time() + 2500  # the virtual clock runs ahead
    assert overlaid.cpu_percent == 90.0 and overlaid.disk_latency_ms == 80.0
    assert overlaid.columns == {"other:m07": 7.5}
    assert overlaid.request_latency_ms is not None and overlaid.request_latency_ms < 1000  # real
    # Exclusive: the trace is the whole reading (what the demo does with an ASD incident).
    write_overlay(state_dir, port, trace, {"cpu": "cpu_percent", "m07": "other:m07"},
                  speedup=300.0, wall_start=time.time() - 10, exclusive=True)
    alone = sample()
    assert alone.cpu_percent == 90.0 and alone.columns == {"other:m07": 7.5}
    assert alone.request_latency_ms is None and alone.disk_latency_ms is None
    remove_overlay(state_dir, port)
    real = sample()
    assert real.timestamp <= time.time() and real.columns == {}


def test_server_cpu_and_memory_are_read_on_a_busy_machine(local_service: LocalService) -> None:
    """The server's processes are found through the collector's own backend while it lives:
    once its connection closed, a busy machine often let that backend exit first, and 15 % of
    samples read 0 CPU and 0 memory (measured on 2 cores with a busy loop per core). Both come
    from that one lookup, so checking memory checks both."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(os.cpu_count() or 2)]  # every core busy, whatever the runner
    try:
        collector = LocalMetricsCollector(local_service.request.instance_id,
                                          local_service.primary.endpoint)
        memory = [collector.sample().memory_percent for _ in range(60)]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert all(value is not None and value > 0 for value in memory), memory


def test_a_bad_overlay_is_refused_when_installed(tmp_path: Path) -> None:
    """Installing an overlay whose trace lacks a column fails at once, naming the column."""
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp,cpu\n1700000000,10\n")
    with pytest.raises(TraceError, match="'disk' not found"):
        write_overlay(tmp_path, 5432, trace, {"disk": "disk_latency_ms"}, speedup=300.0,
                      wall_start=time.time())
