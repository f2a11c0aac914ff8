"""Trace files: loading, one-line errors for unusable files, replay at a speed-up."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.trace import TraceError, load_trace, replay


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_loads_several_columns_and_counts_bad_values(tmp_path: Path) -> None:
    """Value columns map to metrics; empty, non-numeric and absurd cells are counted."""
    path = _write(tmp_path, "ts,c,m\n2024-01-01 00:00:00,10,50\n2024-01-01 00:05:00,,x\n"
                            "2024-01-01 00:10:00,500,-1\n")
    trace = load_trace(path, "ts", [("c", "cpu_percent"), ("m", "memory_percent")])
    assert trace.timestamps[1] == "2024-01-01 00:05:00"
    assert trace.times[1] - trace.times[0] == 300
    assert trace.values["cpu_percent"][0] == 10 and np.isnan(trace.values["cpu_percent"][1:]).all()
    assert trace.ignored == {"missing": 1, "nan": 1, "negative": 1, "absurd": 1}


def test_epoch_seconds_are_accepted(tmp_path: Path) -> None:
    """A numeric time column is read as epoch seconds."""
    trace = load_trace(_write(tmp_path, "timestamp,value\n100,1\n400,2\n"), "timestamp",
                       [("value", "other")])
    assert list(trace.times) == [100.0, 400.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("timestamp,value\n", "no data rows"),
        ("time,value\n2024-01-01,1\n", "column 'timestamp' not found"),
        ("timestamp,v\n2024-01-01,1\n", "column 'value' not found"),
        ("timestamp,value\n2024-01-01,1\nyesterday-ish,2\n", "cannot parse timestamp"),
        ("timestamp,value\n2024-01-02,1\n2024-01-01,2\n", "earlier than the row before"),
    ],
)
def test_unusable_files_raise_one_line(tmp_path: Path, text: str, message: str) -> None:
    """Each whole-file problem raises TraceError with a single line naming it."""
    with pytest.raises(TraceError, match=message) as caught:
        load_trace(_write(tmp_path, text), "timestamp", [("value", "other")])
    assert "\n" not in str(caught.value)


def test_replay_spaces_samples_by_speedup(tmp_path: Path) -> None:
    """Replay sleeps the original gaps divided by the speed-up and yields samples."""
    path = _write(tmp_path, "timestamp,value\n0,1\n600,2\n1200,\n")
    trace = load_trace(path, "timestamp", [("value", "cpu_percent")])
    slept: list[float] = []
    samples = list(replay(trace, speedup=60, sleep=slept.append))
    assert slept == [10.0, 10.0]
    assert [s.cpu_percent for s in samples] == [1.0, 2.0, None]
    assert list(replay(trace, speedup=math.inf, sleep=slept.append))
    assert len(slept) == 2
