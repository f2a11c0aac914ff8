"""The shadow benchmark: its statistics, and a tiny end-to-end run of its quick mode.

The end-to-end run checks the shape of the JSON and that no acknowledged write was lost; it
asserts nothing about timings, which belong in the results file, not in a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bench.shadow_lab
from bench import shadow_sizes
from bench.shadow import BENCH_ROOT, REPO_ROOT
from bench.shadow_lab import BenchConfig, Lab
from bench.shadow_stats import percentile, summarise, visibility_lags_ms


def test_percentile_interpolates_between_ranks() -> None:
    """Percentiles interpolate linearly between ranks, as numpy's default does."""
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(101)), 99) == 99.0
    assert percentile([], 50) is None


def test_summarise_reports_p50_p99_and_count() -> None:
    """A summary holds p50, p99, max and the sample count; no samples give ``None``s."""
    assert summarise([1.0, 2.0, 3.0]) == {"p50": 2.0, "p99": 2.98, "max": 3.0, "samples": 3}
    assert summarise([]) == {"p50": None, "p99": None, "max": None, "samples": 0}


def test_visibility_lag_is_the_midpoint_of_the_window_after_the_ack() -> None:
    """An id became visible between the previous poll's start and the showing poll's return;
    the lag is that window's midpoint minus the ack, never negative, and unseen ids are
    left out."""
    polls = [(10.0, 10.1, 0), (10.2, 10.3, 1), (10.4, 10.5, 1), (10.6, 10.7, 3)]
    lags = visibility_lags_ms([1, 2, 3, 4], [10.0, 10.3, 10.35, 10.4], polls)
    # id 1: window 10.0..10.3; ids 2 and 3: window 10.4..10.7; id 4: never seen.
    assert lags == pytest.approx([150.0, 250.0, 200.0])
    # A synchronous standby can show an id before the writer hears the ack: lag 0.
    assert visibility_lags_ms([1], [11.0], polls) == [0.0]


@pytest.mark.integration  # starts a server or our program
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    """A tiny quick run writes every required figure as a number and loses no acked write."""
    output = tmp_path / "shadow.json"
    argv = [sys.executable, "-m", "bench.shadow", "--quick", "--size-gb", "0.02",
            "--repeats", "1", "--load-s", "3", "--archive-interval-s", "1",
            "--output", str(output)]
    with subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as bench:
        stdout, stderr = bench.communicate(timeout=240)
    assert bench.returncode == 0, stdout[-2000:] + stderr[-4000:]
    result = json.loads(output.read_text())
    for key in ("provision_s", "pg_basebackup_s", "provision_ratio", "provision_unyielding_s"):
        assert isinstance(result[key], float) and result[key] > 0, key
    for tier in ("tier1", "tier2", "tier3"):
        for stat in ("p50", "p99"):
            assert isinstance(result["replication_lag_ms"][tier][stat], float), tier
    for name in ("no_shadow", "tier1", "tier2"):
        for stat in ("p50", "p99"):
            assert isinstance(result["commit_latency_ms"][name][stat], float), name
    assert all(isinstance(v, int) for v in result["wal_bytes_shipped"].values())
    assert result["lost_acked_writes"] == 0
    # Nothing is left behind: the run's folder (named after its pid) is gone.
    assert not (BENCH_ROOT / f"run-{bench.pid}").exists()


@pytest.mark.integration  # starts a server or our program
def test_sizes_run_end_to_end(tmp_path: Path) -> None:
    """The size sweep measures each size on its own primary and removes every run folder."""
    output = tmp_path / "sizes.json"
    argv = [sys.executable, "-m", "bench.shadow_sizes", "--sizes", "0.02", "0.04",
            "--repeats", "1", "--output", str(output)]
    with subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as bench:
        stdout, stderr = bench.communicate(timeout=240)
    assert bench.returncode == 0, stdout[-2000:] + stderr[-4000:]
    sizes = json.loads(output.read_text())["sizes"]
    assert [s["size_gb"] for s in sizes] == [0.02, 0.04]
    assert sizes[0]["db_bytes"] < sizes[1]["db_bytes"]
    for size in sizes:
        for key in ("provision_s", "pg_basebackup_s", "provision_ratio", "overhead_s"):
            assert isinstance(size[key], float) and size[key] > 0, key
    assert not list(BENCH_ROOT.glob(f"sizes-{bench.pid}-*"))


def test_a_lab_that_fails_to_set_up_removes_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab owns its run folder from construction on: a failure there removes it."""
    work_dir = tmp_path / "run"
    work_dir.mkdir()

    def no_ports(count: int) -> list[int]:
        raise OSError("no free ports")

    monkeypatch.setattr(bench.shadow_lab, "free_ports", no_ports)
    with pytest.raises(OSError, match="no free ports"):
        Lab(work_dir, BenchConfig())
    assert not work_dir.exists()


@pytest.mark.parametrize("size", ["nan", "inf", "0", "-1"])
def test_the_size_sweep_refuses_sizes_that_are_not_positive_numbers(
    size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A size that is not a finite positive number is refused before anything starts."""
    with pytest.raises(SystemExit) as exit_info:
        shadow_sizes.main(["--sizes", "1", size])
    assert exit_info.value.code == 2
    assert "--sizes value must be positive (and finite)" in capsys.readouterr().err
