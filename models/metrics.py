"""Platform-neutral metric samples and the rules that decide which values are usable.

Every collector (psutil and ``/proc`` locally, CloudWatch, the Kubernetes metrics API, a CSV
trace) produces :class:`MetricSample` values or, for batches, arrays keyed by the canonical
metric names in :data:`METRICS`. Any field may be missing. :func:`sanitize` turns raw values
into ``float64`` arrays where every unusable value (NaN, infinite, negative, absurd) is NaN and
counted, so nothing downstream ever has to guard against them again.

**Columns.** A series or window may carry any number of metric *columns*. Each column is keyed
by a *column key*: the canonical name of its kind alone (``"cpu_percent"``, one column of that
kind, as every collector produced before) or ``"<kind>:<label>"`` (``"other:m07"``,
``"disk_used_percent:/var"``) when a kind repeats or the column should keep its own name. Only
the kind gives a column its meaning (believable range, threshold); the label is a name for
people. :func:`column_kind` parses a key; every function here that takes a metric name takes a
column key too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MetricSpec:
    """What one metric means and which values of it are believable."""

    name: str
    """Canonical name, also the key in metric windows."""
    unit: str
    """Unit of the values, for humans."""
    valid_min: float
    """Smallest believable value; anything lower is ignored and counted as ``negative``."""
    valid_max: float
    """Largest believable value; anything higher is ignored and counted as ``absurd``."""
    threshold: float | None = None
    """Level at which the instance is in trouble. Only metrics on a known scale have one; they
    get absolute-level and time-to-threshold features, the others only scale-free ones."""


METRIC_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("cpu_percent", "%", 0.0, 100.0, threshold=95.0),
    MetricSpec("memory_percent", "%", 0.0, 100.0, threshold=95.0),
    MetricSpec("disk_latency_ms", "ms", 0.0, 600_000.0, threshold=100.0),
    MetricSpec("network_bytes", "bytes", 0.0, 1e15),
    MetricSpec("request_latency_ms", "ms", 0.0, 3_600_000.0, threshold=1000.0),
    MetricSpec("requests_per_second", "1/s", 0.0, 1e9),
    MetricSpec("error_rate", "fraction", 0.0, 1.0, threshold=0.05),
    MetricSpec("replication_lag_bytes", "bytes", 0.0, 1e15),
    MetricSpec("restarts", "count", 0.0, 1e9),
    # Resources that run out: used share of their capacity (100 = exhausted). Collectors feed
    # them to the exhaustion forecast (models/exhaustion.py) and to the model.
    MetricSpec("disk_used_percent", "%", 0.0, 100.0, threshold=95.0),
    MetricSpec("connections_percent", "%", 0.0, 100.0, threshold=95.0),
    # Age of the oldest unfrozen transaction ID as a share of the wraparound limit; PostgreSQL
    # stops assigning IDs near 100 %, anti-wraparound vacuums start far below.
    MetricSpec("xid_age_percent", "%", 0.0, 100.0, threshold=50.0),
    # WAL held back by replication slots as a share of its budget (max_slot_wal_keep_size, or
    # the free disk when unlimited); it may pass 100 before the disk is full.
    MetricSpec("wal_retained_percent", "%", 0.0, 1000.0, threshold=80.0),
    # A metric of unknown meaning (a NAB series, an ASG metric): it may be negative.
    MetricSpec("other", "", -1e18, 1e18),
)
"""Every metric the Predictive Analytics Engine understands, in feature order."""

METRICS: tuple[str, ...] = tuple(spec.name for spec in METRIC_SPECS)
"""Canonical metric names."""

SPEC_BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in METRIC_SPECS}
"""Lookup from canonical name to :class:`MetricSpec`."""

NAMED_KINDS: tuple[str, ...] = tuple(name for name in METRICS if name != "other")
"""Kinds with a meaning of their own; each gets a named slot in the feature vector (the
first column of the kind fills it). ``other`` columns are only seen through the cross-column
summary, so any number of them costs no extra model size."""


def column_kind(key: str) -> str:
    """The metric kind of a column key: ``"other:m07"`` → ``"other"``, ``"cpu_percent"`` →
    ``"cpu_percent"``.

    Raises:
        KeyError: the kind is not one of :data:`METRICS` or the label is empty.
    """
    kind, colon, label = key.partition(":")
    if kind not in SPEC_BY_NAME or (colon and not label):
        raise KeyError(f"unknown metric column {key!r}; a column is a kind or <kind>:<label>, "
                       f"kinds are {', '.join(METRICS)}")
    return kind


def column_key(kind: str, label: str | None = None) -> str:
    """The column key for one column of ``kind`` (with ``label`` when given)."""
    column_kind(kind)
    return f"{kind}:{label}" if label else kind


def check_columns(keys: Iterable[str]) -> None:
    """Raise :class:`KeyError` naming the first key that is not a valid column key."""
    for key in keys:
        column_kind(key)


def ordered_columns(keys: Iterable[str]) -> list[str]:
    """Column keys in feature order: by kind as in :data:`METRICS`, then as given.

    The order decides which column of a named kind fills its named slot (the first), so it
    must not depend on dictionary order alone.
    """
    position = {name: i for i, name in enumerate(METRICS)}
    keys = list(keys)
    return sorted(keys, key=lambda k: (position[column_kind(k)], keys.index(k)))

IGNORED_KINDS = ("missing", "nan", "negative", "absurd")
"""Why a value was ignored: absent, not a finite number, below ``valid_min``, above
``valid_max``."""


@dataclass(frozen=True)
class MetricSample:
    """One reading of one instance; every metric is optional.

    Network bytes in and out are kept apart here (collectors report them apart) and summed
    into ``network_bytes`` for the model.
    """

    timestamp: float
    """Seconds since the Unix epoch (UTC)."""
    instance_id: str = ""
    """The instance the reading belongs to."""
    cpu_percent: float | None = None
    """CPU utilisation of the instance, 0..100."""
    memory_percent: float | None = None
    """Memory in use, 0..100."""
    disk_latency_ms: float | None = None
    """Mean disk I/O latency over the sampling interval, milliseconds."""
    network_in_bytes: float | None = None
    """Bytes received during the sampling interval."""
    network_out_bytes: float | None = None
    """Bytes sent during the sampling interval."""
    request_latency_ms: float | None = None
    """Request latency p99, milliseconds."""
    requests_per_second: float | None = None
    """Request rate."""
    error_rate: float | None = None
    """Fraction of requests that failed, 0..1."""
    replication_lag_bytes: float | None = None
    """How far the shadow is behind, bytes."""
    restarts: float | None = None
    """Restart counter of the service (monotone)."""
    other: float | None = None
    """A metric of unknown meaning."""
    disk_used_percent: float | None = None
    """Share of the data filesystem in use, 0..100."""
    connections_percent: float | None = None
    """Client connections as a share of ``max_connections``, 0..100."""
    xid_age_percent: float | None = None
    """Age of the oldest unfrozen transaction ID as a share of the wraparound limit, 0..100."""
    wal_retained_percent: float | None = None
    """WAL retained by replication slots as a share of its budget (may exceed 100)."""
    columns: dict[str, float | None] = field(default_factory=dict)
    """Further columns by column key (``"other:m07"``, ``"disk_used_percent:/var"``): any
    number, any kind, ``other`` repeated."""

    def metric_values(self) -> dict[str, float | None]:
        """The sample as column key → value (``None`` when absent): every canonical metric,
        then the extra :attr:`columns`."""
        network: float | None = None
        parts = [v for v in (self.network_in_bytes, self.network_out_bytes) if v is not None]
        if parts:
            network = float(sum(parts))
        values: dict[str, float | None] = {"network_bytes": network}
        for item in fields(self):
            if item.name in SPEC_BY_NAME:
                values[item.name] = getattr(self, item.name)
        result = {name: values.get(name) for name in METRICS}
        result.update(self.columns)
        return result


def samples_to_arrays(
    samples: Sequence[MetricSample],
) -> tuple[FloatArray, dict[str, list[float | None]]]:
    """Column-wise view of time-ordered samples: timestamps and raw values per column key
    (every canonical metric, plus any extra column some sample carries, ``None`` where a
    sample lacks it)."""
    times = np.array([s.timestamp for s in samples], dtype=np.float64)
    columns: dict[str, list[float | None]] = {name: [] for name in METRICS}
    for row, sample in enumerate(samples):
        for name, value in sample.metric_values().items():
            column = columns.setdefault(name, [None] * row)
            column.append(value)
        for column in columns.values():
            if len(column) == row:
                column.append(None)
    return times, columns


def empty_counts() -> dict[str, int]:
    """A fresh ignored-value counter with every kind at zero."""
    return dict.fromkeys(IGNORED_KINDS, 0)


def sanitize(
    name: str, raw: Iterable[float | None] | FloatArray, counts: dict[str, int] | None = None
) -> FloatArray:
    """Return ``raw`` as float64 with every unusable value replaced by NaN.

    Args:
        name: canonical metric name or column key (its kind selects the believable range).
        raw: values; ``None`` means the collector had nothing.
        counts: if given, incremented per :data:`IGNORED_KINDS` for each value ignored.
    """
    spec = SPEC_BY_NAME[column_kind(name)]
    if isinstance(raw, np.ndarray):
        values = raw.astype(np.float64, copy=True)
        missing = 0
    else:
        items = list(raw)
        missing = sum(1 for v in items if v is None)
        values = np.array([np.nan if v is None else v for v in items], dtype=np.float64)
    not_finite = ~np.isfinite(values)
    with np.errstate(invalid="ignore"):
        negative = ~not_finite & (values < spec.valid_min)
        absurd = ~not_finite & (values > spec.valid_max)
    if counts is not None:
        # A None became NaN above; count it once, as missing.
        counts["missing"] += missing
        counts["nan"] += int(not_finite.sum()) - missing
        counts["negative"] += int(negative.sum())
        counts["absurd"] += int(absurd.sum())
    values[not_finite | negative | absurd] = np.nan
    return values


def sanitize_all(
    columns: Mapping[str, Iterable[float | None] | FloatArray], counts: dict[str, int] | None = None
) -> dict[str, FloatArray]:
    """:func:`sanitize` every column of ``columns`` (keyed by column key).

    Raises:
        KeyError: a key is not a valid column key (see :func:`column_kind`).
    """
    check_columns(columns)
    return {name: sanitize(name, raw, counts) for name, raw in columns.items()}
