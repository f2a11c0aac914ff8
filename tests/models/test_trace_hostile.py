"""Property tests of ``score-trace``'s CSV reader with hostile files: whatever the bytes,
:func:`models.trace.load_trace` returns a trace or raises :class:`TraceError` naming the file
(and the column or row at fault); no pandas or NumPy exception escapes, and reading writes
nothing."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.trace import Trace, TraceError, load_trace

_CELL = st.one_of(
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "-", "null", "N/A",
                     "2026-12-07T10:00:00Z", "2026-13-45T99:99:99", "1765100000",
                     "1765100000.5", "0x10", "1_000", "١٢٣", "=cmd|' /C calc'!A0",
                     "\"quoted, with comma\"", "line\nbreak", "\x00", "9" * 500]),
    st.text(max_size=20),
)
_HEADER = st.one_of(
    st.just(["timestamp", "value"]),
    st.lists(st.one_of(st.sampled_from(["timestamp", "value", "cpu", ""]),
                       st.text(max_size=10)), min_size=1, max_size=5))
_GOOD_ROW = st.tuples(st.integers(min_value=1_700_000_000, max_value=1_800_000_000).map(str),
                      st.floats(min_value=0, max_value=100).map(repr)).map(list)


@st.composite
def _csv_text(draw: st.DrawFn) -> str:
    header = draw(_HEADER)
    rows = draw(st.lists(st.one_of(_GOOD_ROW, _GOOD_ROW, st.lists(
        _CELL, min_size=0, max_size=len(header) + 2)), max_size=12))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


READ = {"ok": 0, "refused": 0}
"""How often each outcome occurred (the properties must exercise both)."""


def _read(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    before = sorted(os.listdir(path.parent))
    try:
        trace = load_trace(path, "timestamp", [("value", "other")])
    except TraceError as err:
        assert str(path) in str(err), str(err)
        READ["refused"] += 1
    else:
        READ["ok"] += 1
        assert isinstance(trace, Trace)
        assert len(trace.times) == len(trace.timestamps)
        assert all(math.isfinite(t) for t in trace.times)
    assert sorted(os.listdir(path.parent)) == before


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=_csv_text())
def test_any_csv_is_read_or_refused_naming_the_file(tmp_path: Path, text: str) -> None:
    """CSV-shaped files with hostile cells (NaN, overflow, formula injection, NUL, line
    breaks, foreign digits, impossible dates): a trace with finite times, or a TraceError."""
    _read(tmp_path / "trace.csv", text.encode("utf-8", "surrogatepass"))


def test_the_properties_saw_both_outcomes() -> None:
    """The generated files were neither all refused nor all read (runs after the property
    above in file order; alone it has nothing to check)."""
    if sum(READ.values()):
        assert READ["ok"] and READ["refused"], READ


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300))
def test_any_bytes_are_read_or_refused(tmp_path: Path, content: bytes) -> None:
    """Arbitrary bytes after a valid header: never a traceback."""
    _read(tmp_path / "trace.csv", b"timestamp,value\n" + content)


def test_a_formula_cell_is_ignored_not_evaluated(tmp_path: Path) -> None:
    """A spreadsheet formula in a value cell is just an unparsable value: the row stays and
    its value is NaN (a sanity anchor for the properties above)."""
    path = tmp_path / "trace.csv"
    path.write_text("timestamp,value\n1765100000,1.5\n1765100060,=1+1\n1765100120,2\n")
    trace = load_trace(path, "timestamp", [("value", "other")])
    assert len(trace.timestamps) == 3 and math.isnan(trace.values["other"][1])
