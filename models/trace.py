"""Metric traces from CSV files: load them, check them, replay them at a chosen speed-up.

A trace is any CSV with a time column and one or more value columns, each mapped to a
canonical metric. Problems with the file as a whole (missing column, no rows, a timestamp
that cannot be parsed or goes backwards) raise :class:`TraceError` with one line naming the
problem; problems with single values (empty, not a number, negative, absurd) are ignored and
counted in :attr:`Trace.ignored`.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.metrics import METRICS, FloatArray, MetricSample, empty_counts, sanitize

CLI_METRICS = {
    "cpu": "cpu_percent",
    "memory": "memory_percent",
    "disk_latency": "disk_latency_ms",
    "network": "network_bytes",
    "request_latency": "request_latency_ms",
    "requests": "requests_per_second",
    "other": "other",
}
"""Short metric names accepted on the command line → canonical names."""


class TraceError(ValueError):
    """The trace file cannot be used; the message is one line naming the problem."""


@dataclass
class Trace:
    """A loaded trace: raw timestamps as written, epoch seconds and sanitized values."""

    timestamps: list[str]
    """The time column exactly as in the file (echoed in outputs)."""
    times: FloatArray
    """Epoch seconds, non-decreasing."""
    values: dict[str, FloatArray]
    """Canonical metric → sanitized values (NaN where ignored)."""
    ignored: dict[str, int] = field(default_factory=empty_counts)
    """Ignored values by kind."""


def load_trace(path: Path, time_column: str, columns: Sequence[tuple[str, str]]) -> Trace:
    """Read ``path`` and map value columns to metrics.

    Args:
        path: the CSV file.
        time_column: name of the time column (ISO 8601 text or epoch seconds).
        columns: ``(column name, canonical metric)`` pairs; each metric at most once.

    Raises:
        TraceError: unreadable file, missing column, no rows, bad or decreasing timestamps.
    """
    metrics = [metric for _, metric in columns]
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise TraceError(f"unknown metric {unknown[0]!r}; known metrics are {', '.join(METRICS)}")
    duplicated = sorted({m for m in metrics if metrics.count(m) > 1})
    if duplicated:
        raise TraceError(f"metric {duplicated[0]!r} is given for more than one column")
    frame = _read(path)
    wanted = [time_column, *(column for column, _ in columns)]
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        raise TraceError(
            f"{path}: column {missing[0]!r} not found; columns are {', '.join(frame.columns)}"
        )
    if frame.empty:
        raise TraceError(f"{path}: no data rows")
    stamps = frame[time_column].astype(str).str.strip()
    times = _parse_times(path, stamps)
    backwards = np.flatnonzero(np.diff(times) < 0)
    if backwards.size:
        row = int(backwards[0]) + 1
        raise TraceError(f"{path}: timestamp {stamps.iloc[row]!r} at data row {row + 1} is "
                         "earlier than the row before it")
    counts = empty_counts()
    values = {}
    for column, metric in columns:
        text = frame[column].str.strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        absent = (text == "").to_numpy()
        counts["missing"] += int(absent.sum())
        numbers[absent] = 0.0  # placeholder so sanitize counts it as valid, not as NaN
        cleaned = sanitize(metric, numbers, counts)
        cleaned[absent] = np.nan
        values[metric] = cleaned
    return Trace(list(stamps), times, values, counts)


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, csv.Error) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "parse error"
        raise TraceError(f"{path}: not a valid CSV ({first})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise TraceError(f"{path}: cannot read ({err.strerror})") from None


def _parse_times(path: Path, stamps: pd.Series) -> FloatArray:
    numeric = pd.to_numeric(stamps, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(dtype=np.float64)  # epoch seconds
    parsed = pd.to_datetime(stamps, format="ISO8601", utc=True, errors="coerce")
    if parsed.isna().any():
        # Not ISO 8601 throughout: let pandas guess per value before giving up.
        parsed = pd.to_datetime(stamps, format="mixed", utc=True, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise TraceError(f"{path}: cannot parse timestamp {stamps.iloc[row]!r} at data row "
                         f"{row + 1}")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.to_numpy(dtype=np.float64)


def replay(
    trace: Trace,
    speedup: float = 1.0,
    *,
    instance_id: str = "trace",
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[MetricSample]:
    """Yield the trace's rows as samples, spaced like the original divided by ``speedup``.

    ``speedup=math.inf`` replays as fast as possible. ``sleep`` is injectable so tests and
    simulations need not wait.
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
        yield MetricSample(timestamp=now, instance_id=instance_id, network_in_bytes=network,
                           **metrics)


def _value(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
