"""Platform-neutral metric samples and the rules that decide which values are usable.

Every collector (psutil and ``/proc`` locally, CloudWatch, the Kubernetes metrics API, a CSV
trace) produces :class:`MetricSample` values or, for batches, arrays keyed by the canonical
metric names in :data:`METRICS`. Any field may be missing. :func:`sanitize` turns raw values
into ``float64`` arrays where every unusable value (NaN, infinite, negative, absurd) is NaN and
counted, so nothing downstream ever has to guard against them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

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
    # A metric of unknown meaning (a NAB series, an ASG metric): it may be negative.
    MetricSpec("other", "", -1e18, 1e18),
)
"""Every metric the Predictive Analytics Engine understands, in feature order."""

METRICS: tuple[str, ...] = tuple(spec.name for spec in METRIC_SPECS)
"""Canonical metric names."""

SPEC_BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in METRIC_SPECS}
"""Lookup from canonical name to :class:`MetricSpec`."""

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

    def metric_values(self) -> dict[str, float | None]:
        """The sample as canonical metric name → value (``None`` when absent)."""
        network: float | None = None
        parts = [v for v in (self.network_in_bytes, self.network_out_bytes) if v is not None]
        if parts:
            network = float(sum(parts))
        values: dict[str, float | None] = {"network_bytes": network}
        for field in fields(self):
            if field.name in SPEC_BY_NAME:
                values[field.name] = getattr(self, field.name)
        return {name: values.get(name) for name in METRICS}


def samples_to_arrays(
    samples: Sequence[MetricSample],
) -> tuple[FloatArray, dict[str, list[float | None]]]:
    """Column-wise view of time-ordered samples: timestamps and raw values per metric."""
    times = np.array([s.timestamp for s in samples], dtype=np.float64)
    columns: dict[str, list[float | None]] = {name: [] for name in METRICS}
    for sample in samples:
        for name, value in sample.metric_values().items():
            columns[name].append(value)
    return times, columns


def empty_counts() -> dict[str, int]:
    """A fresh ignored-value counter with every kind at zero."""
    return dict.fromkeys(IGNORED_KINDS, 0)


def sanitize(
    name: str, raw: Iterable[float | None] | FloatArray, counts: dict[str, int] | None = None
) -> FloatArray:
    """Return ``raw`` as float64 with every unusable value replaced by NaN.

    Args:
        name: canonical metric name (selects the believable range).
        raw: values; ``None`` means the collector had nothing.
        counts: if given, incremented per :data:`IGNORED_KINDS` for each value ignored.
    """
    spec = SPEC_BY_NAME[name]
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
    """:func:`sanitize` every known metric in ``columns``.

    Raises:
        KeyError: a column is not one of :data:`METRICS`.
    """
    unknown = sorted(set(columns) - set(METRICS))
    if unknown:
        raise KeyError(f"unknown metrics {unknown}; known metrics are {', '.join(METRICS)}")
    return {name: sanitize(name, raw, counts) for name, raw in columns.items()}
