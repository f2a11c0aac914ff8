"""Trace files: loading, repairs of messy exports, one-line errors for unusable files,
replay at a speed-up."""

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


def test_repeated_other_columns_get_their_own_keys(tmp_path: Path) -> None:
    """Three columns of kind other become other:a, other:b, other:c (no refusal)."""
    path = _write(tmp_path, "timestamp,a,b,c\n0,1,2,3\n300,4,5,6\n")
    trace = load_trace(path, "timestamp", [("a", "other"), ("b", "other"), ("c", "other")])
    assert list(trace.values) == ["other:a", "other:b", "other:c"]
    assert trace.values["other:c"][1] == 6


def test_epoch_seconds_are_accepted(tmp_path: Path) -> None:
    """A numeric time column is read as epoch seconds."""
    trace = load_trace(_write(tmp_path, "timestamp,value\n100,1\n400,2\n"), "timestamp",
                       [("value", "other")])
    assert list(trace.times) == [100.0, 400.0]


def test_a_backward_clock_step_is_repaired_causally(tmp_path: Path) -> None:
    """A 55-minute step back in the middle: later rows are read later by the step plus one
    usual interval, so time keeps moving forward; rows before are untouched; noted."""
    stamps = [i * 300 for i in range(20)] + [19 * 300 - 3600 + i * 300 for i in range(1, 21)]
    text = "timestamp,value\n" + "".join(f"{t},{i % 5}\n" for i, t in enumerate(stamps))
    trace = load_trace(_write(tmp_path, text), "timestamp", [("value", "other")])
    assert (np.diff(trace.times) > 0).all()
    assert list(trace.times[:20]) == stamps[:20]
    assert trace.times[20] - trace.times[19] == 300
    (step,) = trace.clock_steps
    assert step.row == 21 and step.back_s == 3300 and step.shift_s == 3600
    assert any("clock stepped back 55 min at data row 21" in n and "60 min later" in n
               for n in trace.notes)
    # Causal: the repair of a prefix is the prefix of the repair.
    prefix = "timestamp,value\n" + "".join(f"{t},0\n" for t in stamps[:25])
    assert list(load_trace(_write(tmp_path, prefix), "timestamp",
                           [("value", "other")]).times) == list(trace.times[:25])


def test_duplicates_gaps_empty_and_constant_columns_are_data(tmp_path: Path) -> None:
    """Duplicate timestamps, a gap of hours, a column that is all empty and a constant one:
    read as they are, with notes where it helps."""
    text = ("timestamp,a,b,c\n0,1,,5\n300,2,,5\n300,3,NaN,5\n30000,4,,5\n30300,5,null,5\n")
    trace = load_trace(_write(tmp_path, text), "timestamp",
                       [("a", "other"), ("b", "other"), ("c", "other")])
    assert len(trace.times) == 5 and np.isnan(trace.values["other:b"]).all()
    assert (trace.values["other:c"] == 5).all()
    assert any("repeat the timestamp" in n for n in trace.notes)
    assert any("'b' has no values" in n for n in trace.notes)


def test_a_few_unparsable_timestamps_are_skipped(tmp_path: Path) -> None:
    """One garbled timestamp among many: that row keeps the previous time, its values are
    ignored, and it is noted."""
    rows = [f"2024-01-01T00:{i:02d}:00Z,{i}" for i in range(0, 50, 5)]
    rows[4] = "garbled,99"
    trace = load_trace(_write(tmp_path, "timestamp,value\n" + "\n".join(rows) + "\n"),
                       "timestamp", [("value", "other")])
    assert trace.times[4] == trace.times[3] and np.isnan(trace.values["other"][4])
    assert any("unparsable timestamp" in n for n in trace.notes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("timestamp,value\n", "no data rows"),
        ("time,value\n2024-01-01,1\n", "column 'timestamp' not found"),
        ("timestamp,v\n2024-01-01,1\n", "column 'value' not found"),
        ("timestamp,value\n2024-01-01,1\nyesterday-ish,2\n", "cannot parse timestamp"),
        ("timestamp,value\n2024-01-03,1\n2024-01-02,2\n2024-01-01,3\n", "sort the file"),
        ("timestamp,value\n1,abc\n2,def\n", "holds no numbers"),
    ],
)
def test_unusable_files_raise_one_line(tmp_path: Path, text: str, message: str) -> None:
    """Each whole-file problem raises TraceError with a single line naming it."""
    with pytest.raises(TraceError, match=message) as caught:
        load_trace(_write(tmp_path, text), "timestamp", [("value", "other")])
    assert "\n" not in str(caught.value)


def test_too_many_columns_is_refused(tmp_path: Path) -> None:
    """Ten thousand value columns is not a metric trace: one line says so."""
    names = [f"c{i}" for i in range(10_000)]
    path = _write(tmp_path, "timestamp," + ",".join(names) + "\n0," + ",".join(["1"] * 10_000)
                  + "\n")
    with pytest.raises(TraceError, match="at most") as caught:
        load_trace(path, "timestamp", [(n, "other") for n in names])
    assert "\n" not in str(caught.value)


def test_replay_spaces_samples_by_speedup(tmp_path: Path) -> None:
    """Replay sleeps the original gaps divided by the speed-up and yields samples; labelled
    columns travel in the sample's extra columns."""
    path = _write(tmp_path, "timestamp,value,x\n0,1,7\n600,2,8\n1200,,9\n")
    trace = load_trace(path, "timestamp", [("value", "cpu_percent"), ("x", "other:x")])
    slept: list[float] = []
    samples = list(replay(trace, speedup=60, sleep=slept.append))
    assert slept == [10.0, 10.0]
    assert [s.cpu_percent for s in samples] == [1.0, 2.0, None]
    assert samples[2].columns == {"other:x": 9.0}
    assert list(replay(trace, speedup=math.inf, sleep=slept.append))
    assert len(slept) == 2
