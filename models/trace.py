"""Metric traces from CSV files: load them, repair what can be repaired, replay them.

A trace is any CSV with a time column and one or more value columns, each mapped to a
column key (a metric kind, or ``<kind>:<label>`` when kinds repeat; see
:mod:`models.metrics`). Real exports are messy, so only a file that cannot be a trace is
refused; everything else is read and what was done is said in :attr:`Trace.notes` (the CLI
prints them on stderr).

Treatment, row by row and *causally* (a repair never looks at later rows):

=================================  ============================================================
what                               treatment
=================================  ============================================================
empty cell, ``NaN``, ``null``      missing value (data: the features know about gaps)
value out of the kind's range      ignored and counted (negative CPU, 1e30 bytes)
a column that is all missing       kept: its features are NaN ("unknown" to the model)
constant column                    kept: its scale has a floor, a jump in it is news
gap of hours                       kept: windows are in time, an empty window is NaN
duplicate timestamp                kept: two readings of the same moment
clock stepped back                 every later row is read ``step + one usual interval`` later,
                                   so time keeps moving forward (noted, with the row)
unparsable timestamp in some rows  the row keeps the time of the row before it, its values are
                                   ignored (noted)
=================================  ============================================================

Refused with :class:`TraceError` (one line naming the problem): no such file, not a CSV, no
data rows, the time or a value column missing, timestamps unparsable in half the rows or
more, timestamps that mostly run backwards (a file sorted newest first), a value column with
text but not a single number, more than :data:`models.columns.MAX_COLUMNS` value columns.
"""

from __future__ import annotations

import csv
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.columns import MAX_COLUMNS, SHORT_KINDS
from models.metrics import (
    SPEC_BY_NAME,
    FloatArray,
    MetricSample,
    column_kind,
    empty_counts,
    sanitize,
)

CLI_METRICS = {
    "cpu": "cpu_percent",
    "memory": "memory_percent",
    "disk_latency": "disk_latency_ms",
    "network": "network_bytes",
    "request_latency": "request_latency_ms",
    "requests": "requests_per_second",
    "other": "other",
}
"""Short metric names of ``--metric`` (the ``--columns`` shorthand knows more:
:data:`models.columns.SHORT_KINDS`)."""

MISSING_TOKENS = frozenset({"", "nan", "NaN", "NAN", "null", "NULL", "None", "NA", "N/A", "-"})
"""Cells that mean "no value"."""

_NAMES_SHOWN = 12


class TraceError(ValueError):
    """The trace file cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class ClockStep:
    """A place where the time column went backwards, and how it was repaired."""

    row: int
    """Data row (1-based, as an editor shows it after the header) where time went back."""
    timestamp: str
    """That row's timestamp as written."""
    back_s: float
    """How far back the clock stepped."""
    shift_s: float
    """How much later this and every following row is read (cumulative)."""


@dataclass
class Trace:
    """A loaded trace: raw timestamps as written, epoch seconds and sanitized values."""

    timestamps: list[str]
    """The time column exactly as in the file (echoed in outputs)."""
    times: FloatArray
    """Epoch seconds, non-decreasing (after clock-step repair)."""
    values: dict[str, FloatArray]
    """Column key → sanitized values (NaN where missing or ignored)."""
    ignored: dict[str, int] = field(default_factory=empty_counts)
    """Ignored values by kind."""
    clock_steps: list[ClockStep] = field(default_factory=list)
    """Backward clock steps repaired."""
    notes: list[str] = field(default_factory=list)
    """One line per repair or oddity, for stderr."""


def load_trace(path: Path, time_column: str, columns: Sequence[tuple[str, str]]) -> Trace:
    """Read ``path`` and map value columns to column keys.

    Args:
        path: the CSV file.
        time_column: name of the time column (ISO 8601 text or epoch seconds).
        columns: ``(CSV column, column key)`` pairs. A bare kind given for several columns
            (``("a", "other"), ("b", "other")``) becomes ``other:a``, ``other:b``.

    Raises:
        TraceError: the file cannot be a trace (see the module docstring).
    """
    columns = _keyed(columns)
    if len(columns) > MAX_COLUMNS:
        raise TraceError(f"{len(columns)} value columns; at most {MAX_COLUMNS} can be scored "
                         "(choose some with --columns)")
    frame = _read(path)
    wanted = [time_column, *(column for column, _ in columns)]
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:_NAMES_SHOWN]))
        more = f" and {len(frame.columns) - _NAMES_SHOWN} more" if len(
            frame.columns) > _NAMES_SHOWN else ""
        raise TraceError(f"{path}: column {missing[0]!r} not found; columns are {shown}{more}")
    if frame.empty:
        raise TraceError(f"{path}: no data rows")
    stamps = frame[time_column].astype(str).str.strip()
    notes: list[str] = []
    times, bad_time = _parse_times(path, stamps, notes)
    times, steps = _repair_clock(path, stamps, times, notes)
    counts = empty_counts()
    values = {}
    for column, key in columns:
        values[key] = _column_values(path, frame[column], key, counts, notes, column)
        values[key][bad_time] = np.nan
    duplicates = int((np.diff(times) == 0).sum())
    if duplicates:
        notes.append(f"{duplicates} rows repeat the timestamp of the row before; both kept")
    return Trace(list(stamps), times, values, counts, steps, notes)


def _keyed(columns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Validate column keys and give repeated bare kinds a label each."""
    for _, key in columns:
        try:
            column_kind(key)
        except KeyError:
            raise TraceError(f"unknown metric {key!r}; known metrics are "
                             f"{', '.join(SPEC_BY_NAME)}") from None
    bare = Counter(key for _, key in columns if ":" not in key)
    renamed = [(column, key if ":" in key or bare[key] == 1 else f"{key}:{column}")
               for column, key in columns]
    twice = [k for k, n in Counter(k for _, k in renamed).items() if n > 1]
    if twice:
        raise TraceError(f"column key {twice[0]!r} is given for more than one column")
    return renamed


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a file") from None
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, csv.Error) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "parse error"
        raise TraceError(f"{path}: not a valid CSV ({first})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise TraceError(f"{path}: cannot read ({err.strerror})") from None


def _parse_times(path: Path, stamps: pd.Series, notes: list[str]
                 ) -> tuple[FloatArray, np.ndarray]:
    """Epoch seconds per row and the rows whose timestamp could not be parsed (those take
    the time of the row before, or of the first parsable row at the start)."""
    numeric = pd.to_numeric(stamps, errors="coerce")
    if numeric.notna().mean() > 0.5:
        seconds = numeric.to_numpy(dtype=np.float64)
    else:
        parsed = _datetimes(stamps, "ISO8601")
        if parsed.isna().any():
            # Not ISO 8601 throughout: let pandas guess per value before giving up.
            parsed = _datetimes(stamps, "mixed")
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(
            dtype=np.float64)
    bad = ~np.isfinite(seconds)
    if bad.all() or bad.mean() >= 0.5:
        row = int(np.flatnonzero(bad)[0])
        raise TraceError(f"{path}: cannot parse timestamp {stamps.iloc[row]!r} at data row "
                         f"{row + 1} ({int(bad.sum())} of {bad.size} rows unparsable)")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        notes.append(f"{int(bad.sum())} rows have an unparsable timestamp (first: "
                     f"{stamps.iloc[row]!r} at data row {row + 1}); they keep the time of the "
                     "row before and their values are ignored")
        filled = pd.Series(np.where(bad, np.nan, seconds)).ffill().bfill()
        seconds = filled.to_numpy(dtype=np.float64)
    return seconds, bad


def _datetimes(stamps: pd.Series, format: str) -> pd.Series:
    """``stamps`` as UTC datetimes in nanoseconds, NaT where unparsable. Despite
    ``errors="coerce"`` pandas may hand back a coarser unit holding a date nanoseconds cannot
    (``١٢٣``, digits of another script, reads as the year 123), which raises
    ``OutOfBoundsDatetime`` later: then value by value, each such one NaT."""
    try:
        return pd.to_datetime(stamps, format=format, utc=True, errors="coerce").dt.as_unit("ns")
    except (ValueError, OverflowError):
        return pd.Series([_datetime(stamp, format) for stamp in stamps],
                         index=stamps.index, dtype="datetime64[ns, UTC]")


def _datetime(stamp: str, format: str) -> pd.Timestamp:
    try:  # nanoseconds, as the series holds them: the year 123 is out of their range
        return pd.Timestamp(pd.to_datetime(stamp, format=format, utc=True,
                                           errors="coerce")).as_unit("ns")
    except (ValueError, OverflowError):
        return pd.NaT


def _repair_clock(path: Path, stamps: pd.Series, times: FloatArray, notes: list[str]
                  ) -> tuple[FloatArray, list[ClockStep]]:
    """Shift everything after a backward step so time keeps moving forward (causal: the
    shift at a row depends on that row and the rows before it only)."""
    deltas = np.diff(times)
    backwards = np.flatnonzero(deltas < 0)
    if backwards.size == 0:
        return times, []
    if backwards.size > 0.5 * max(deltas.size, 1):
        raise TraceError(f"{path}: timestamps run backwards in {backwards.size} of "
                         f"{deltas.size} steps; sort the file oldest first")
    repaired = times.copy()
    steps: list[ClockStep] = []
    shift = 0.0
    previous_end = 0
    forward: list[float] = []
    for index in backwards.tolist():
        row = index + 1
        forward += [d for d in deltas[previous_end:index].tolist() if d > 0]
        previous_end = row
        usual = float(np.median(forward)) if forward else 0.0
        back = float(times[index] - times[row])
        shift += back + usual
        repaired[row:] = times[row:] + shift
        steps.append(ClockStep(row + 1, str(stamps.iloc[row]), back, shift))
    for step in steps[:5]:
        notes.append(f"clock stepped back {_duration(step.back_s)} at data row {step.row} "
                     f"({step.timestamp}); it and later rows are read {_duration(step.shift_s)} "
                     "later to keep time moving forward")
    if len(steps) > 5:
        notes.append(f"... and {len(steps) - 5} more backward clock steps, repaired the same way")
    return repaired, steps


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _column_values(path: Path, cells: pd.Series, key: str, counts: dict[str, int],
                   notes: list[str], column: str) -> FloatArray:
    text = cells.str.strip()
    absent = text.isin(MISSING_TOKENS).to_numpy()
    numbers = pd.to_numeric(text.where(~absent, "0"), errors="coerce").to_numpy(
        dtype=np.float64, copy=True)
    unparsable = np.isnan(numbers) & ~absent
    if unparsable.any() and not (~unparsable & ~absent).any():
        first = text.iloc[int(np.flatnonzero(unparsable)[0])]
        raise TraceError(f"{path}: column {column!r} holds no numbers (first cell {first!r})")
    counts["missing"] += int(absent.sum())
    numbers[absent] = 0.0  # placeholder so sanitize counts it as valid, not as NaN
    cleaned = sanitize(key, numbers, counts)
    cleaned[absent] = np.nan
    if absent.all():
        notes.append(f"column {column!r} has no values at all; scored as unknown")
    return cleaned


def replay(
    trace: Trace,
    speedup: float = 1.0,
    *,
    instance_id: str = "trace",
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[MetricSample]:
    """Yield the trace's rows as samples, spaced like the original divided by ``speedup``.

    ``speedup=math.inf`` replays as fast as possible. ``sleep`` is injectable so tests and
    simulations need not wait. Columns whose key is a bare canonical metric fill that field
    of the sample; labelled columns (``other:m07``) go into :attr:`MetricSample.columns`.
    """
    if not speedup > 0:
        raise ValueError(f"speedup must be > 0, not {speedup}")
    previous: float | None = None
    for row, now in enumerate(trace.times.tolist()):
        if previous is not None and math.isfinite(speedup) and now > previous:
            sleep((now - previous) / speedup)
        previous = now
        metrics = {name: _value(values[row]) for name, values in trace.values.items()}
        network = metrics.pop("network_bytes", None)
        fields = {k: v for k, v in metrics.items() if k in SPEC_BY_NAME}
        extra = {k: v for k, v in metrics.items() if k not in SPEC_BY_NAME}
        yield MetricSample(timestamp=now, instance_id=instance_id, network_in_bytes=network,
                           columns=extra, **fields)


def _value(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


__all__ = ["CLI_METRICS", "SHORT_KINDS", "ClockStep", "Trace", "TraceError", "load_trace",
           "replay"]
