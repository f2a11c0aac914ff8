"""The local collector reads real numbers from a loaded PostgreSQL, HAProxy and /proc."""

from __future__ import annotations

import time

from bench.workload import Writer, prepare_table
from infra.local.metrics import LocalMetricsCollector
from models.metrics import samples_to_arrays, sanitize_all
from tests.conftest import LocalService


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
