"""The scale benchmark: its platform double, and a quick end-to-end run (20 instances).

The end-to-end run checks that every figure is measured and that exactly the injected
instances reached a cutover; it asserts nothing about timings, which belong in
``bench/results/scale.json``, not in a test.
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import scale_double
from contracts.spec import ProtectionSpec, SpecError, validate_spec
from infra import factory
from workers.demo_trace import STEP_S, SYNTHETIC_COLUMNS

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_double_is_unreachable_from_a_user_spec() -> None:
    """A user's spec cannot name the double, and the factory knows it only once the bench
    worker registers it."""
    spec = ProtectionSpec("db-one", platform=scale_double.PLATFORM, primary_port=20000,
                          shadow_port=20001, router_port=20002)
    with pytest.raises(SpecError, match="platform 'scale-double'"):
        validate_spec(spec)
    assert scale_double.PLATFORM not in factory.BUILDERS


def test_metric_stream_replays_healthy_rows_then_the_injected_degradation(
        tmp_path: Path) -> None:
    """Healthy instances walk the healthy rows back and forth on a clock that only moves
    forward; an injected instance switches to the degradation rows from the planned start."""
    trace = tmp_path / "trace.csv"
    with trace.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["timestamp", *SYNTHETIC_COLUMNS])
        for row in range(10):  # cpu_percent carries the row number
            writer.writerow([1000 + row * STEP_S, row, *([1.0] * (len(SYNTHETIC_COLUMNS) - 1))])
    scale_double.TracePlan(str(trace), healthy_rows=4, risky_start_row=7).write(tmp_path)
    stream = scale_double.MetricStream(tmp_path)
    collector = scale_double.DoubleCollector("db-one", stream)
    healthy = [collector.sample() for _ in range(12)]
    rows = [int(s.cpu_percent or 0) for s in healthy]
    assert set(rows) == {0, 1, 2, 3}
    assert all(abs(a - b) <= 1 for a, b in itertools.pairwise(rows))  # no jump
    scale_double.write_injection(tmp_path, ["db-one"])
    risky = [collector.sample() for _ in range(4)]
    assert [int(s.cpu_percent or 0) for s in risky] == [7, 8, 9, 9]
    stamps = [s.timestamp for s in healthy + risky]
    assert all(b - a == STEP_S for a, b in itertools.pairwise(stamps))


@pytest.mark.integration  # starts a server or our program
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    """20 protections on the double: every figure is a measured number, and the cutovers
    started are exactly those of the injected instances (healthy streams raise no alarm)."""
    output = tmp_path / "scale.json"
    argv = [sys.executable, "-m", "bench.scale", "--quick", "--output", str(output)]
    with subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as bench:
        stdout, stderr = bench.communicate(timeout=300)
    assert bench.returncode == 0, stdout[-2000:] + stderr[-4000:]
    result = json.loads(output.read_text())
    assert result["platform"] == "scale-double"
    assert result["start"]["protected"] == result["instances"] == 20
    for phase in ("start", "steady"):
        for process in ("worker", "dev_server"):
            figures = result[phase]["processes"][process]
            assert figures["cpu_seconds"] > 0 and figures["rss_mib_median"] > 0, (phase, process)
    actions = result["steady"]["actions"]
    assert actions["protected_instances"] == 20
    assert isinstance(actions["temporal_actions_per_instance_hour"], float)
    crossing = result["crossing"]
    assert crossing["cutover_instances"] == sorted(crossing["injected"])
    assert crossing["instances_cut_over"] == len(crossing["injected"]) == 3
    for row in crossing["per_instance"]:
        assert row["crossed_at"] <= row["crossing_signalled_at"] + 1.0, row  # clocks agree
        assert row["crossing_signalled_at"] <= row["migrate_signalled_at"], row
        assert row["crossed_at"] <= row["final_crossed_at"] <= row["migrate_signalled_at"], row
        assert row["migrate_signalled_at"] <= row["cutover_started_at"], row
    assert crossing["crossing_to_cutover_start_s"]["samples"] == 3
