"""The demo's trace: a real ASD incident, and the shipped model migrates before the failure
point the demo plays (the check ``make demo`` prints before it starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.policy import Policy
from models.asd import ASD_DIR, asd_available
from models.predictor import DEFAULT_MODEL_PATH, Predictor
from workers.demo_trace import (
    ASD_COLUMNS,
    DEMO_HEALTHY_HOURS,
    DEMO_THRESHOLD,
    TRACE_SERVER,
    build_trace,
    offline_verdict,
)


@pytest.mark.skipif(not asd_available(), reason=f"ASD data not found in {ASD_DIR}")
def test_the_replayed_incident_is_caught_before_the_failure_point(tmp_path: Path) -> None:
    """The trace is the named server's incident with 19 unnamed columns; offline, the shipped
    model migrates after the healthy part and before the demo fails the primary."""
    trace = build_trace(tmp_path, DEMO_HEALTHY_HOURS)
    assert trace.mode == "asd_incident" and TRACE_SERVER in trace.source
    header = trace.csv_path.read_text().splitlines()[0].split(",")
    assert header == ["timestamp", *ASD_COLUMNS]
    assert trace.failure_at - trace.onset == 900.0
    verdict = offline_verdict(trace, Predictor.load(DEFAULT_MODEL_PATH),
                              Policy(threshold=DEMO_THRESHOLD), 48)
    assert verdict.first_migrate_at is not None
    assert trace.onset - 7200 <= verdict.first_migrate_at < trace.failure_at
