"""Time-to-exhaustion forecasts for resources that run out, with a sentence for the reason.

A resource that runs out is a column whose kind has a capacity (:data:`EXHAUSTION_SPECS`):
disk space, memory, connections against ``max_connections``, transaction-ID age against
wraparound, WAL retained by replication slots against its budget, and replication lag
against a lag budget. The forecast fits the column's samples in the last ``fit_window_s`` by
least squares and extrapolates the fit to the capacity:

    hours = (capacity - level now) / slope,   level now = the line's value at the newest sample

The fitted level is used rather than the last sample, so one noisy reading does not move
the forecast. A forecast is only made when the rise is real: at least ``min_samples``
samples spanning ``min_span_s``, and a slope at least ``min_t`` standard errors above zero
(a flat, noisy disk gets no "full in 40 days"). When the rise is also *accelerating* (a
quadratic fit's curvature at least ``min_t`` standard errors above zero: a fill that speeds
up, like WAL piling up behind a stuck slot under growing load), the quadratic is extrapolated
instead, which a straight line would overestimate badly. A column already at capacity
forecasts 0.

Forecasts serve twice: as a model feature (``exhaustion__hours_min`` in
:mod:`models.features`, the soonest over every such column, capped) and as text for the
decision's reason (:func:`forecast_text`: ``"disk full in 38 min"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.metrics import FloatArray, column_kind


@dataclass(frozen=True)
class ExhaustionSpec:
    """A kind of column that can run out."""

    kind: str
    """Canonical metric kind."""
    capacity: float | None
    """Value at which it is exhausted, in the kind's unit (``None``: from the config)."""
    phrase: str
    """What exhaustion is called in a reason, before "in <time>"."""


EXHAUSTION_SPECS: dict[str, ExhaustionSpec] = {
    spec.kind: spec for spec in (
        ExhaustionSpec("disk_used_percent", 100.0, "disk full"),
        ExhaustionSpec("memory_percent", 100.0, "memory exhausted"),
        ExhaustionSpec("connections_percent", 100.0, "connections exhausted"),
        ExhaustionSpec("xid_age_percent", 100.0, "transaction-ID wraparound"),
        ExhaustionSpec("wal_retained_percent", 100.0, "WAL retention budget spent"),
        ExhaustionSpec("replication_lag_bytes", None, "replication lag over budget"),
    )
}
"""Every kind with a capacity."""


@dataclass(frozen=True)
class ExhaustionConfig:
    """How forecasts are made."""

    fit_window_s: float = 7200.0
    """Samples of the last 2 hours are fitted: long enough to see a trend through noise,
    short enough to follow a fill that started recently (measured on synthetic fill-ups,
    ``bench/eval.py``'s ``synthetic_fill_up_holdout``)."""
    min_samples: int = 6
    """Fewer samples than this in the window: no forecast."""
    min_span_s: float = 1800.0
    """The samples must span at least this long."""
    min_t: float = 3.0
    """The slope must be this many standard errors above zero."""
    cap_h: float = 48.0
    """Forecasts further out than this are "not soon" (no text; the feature holds the cap)."""
    replication_lag_budget_bytes: float = 16 * 2**20
    """Replication lag treated as exhausted: 16 MiB. Patroni refuses a failover beyond
    ``maximum_lag_on_failover`` (1 MiB by default) at the moment it happens; a forecast is worth
    telling earlier, so the budget here is wider. Set it to the protection's loss budget."""

    def capacity(self, kind: str) -> float:
        """Capacity of ``kind`` (which must be in :data:`EXHAUSTION_SPECS`)."""
        capacity = EXHAUSTION_SPECS[kind].capacity
        return self.replication_lag_budget_bytes if capacity is None else capacity


@dataclass(frozen=True)
class Forecast:
    """The soonest exhaustion forecast of one instance at one moment."""

    column: str
    """Column key of the resource."""
    hours: float
    """Hours until it is exhausted at the current trend (0 = already)."""

    @property
    def phrase(self) -> str:
        """``disk full``, ``memory exhausted``, …"""
        return EXHAUSTION_SPECS[column_kind(self.column)].phrase

    @property
    def text(self) -> str:
        """``disk full in 38 min`` (the column's label is added when it has one)."""
        return forecast_text(self)


def exhaustion_columns(keys: Mapping[str, object] | list[str]) -> list[str]:
    """The column keys among ``keys`` whose kind can run out."""
    return [key for key in keys if column_kind(key) in EXHAUSTION_SPECS]


def hours_to_exhaustion(times: FloatArray, values: FloatArray, capacity: float,
                        config: ExhaustionConfig | None = None) -> FloatArray:
    """Forecast at the newest sample of each row; NaN where no rise is established.

    Args:
        times: (rows, W) epoch seconds, oldest first, NaN for padding; the last column holds
            each row's decision time.
        values: (rows, W) sanitized values of one column, NaN = missing.
        capacity: value at which the resource is exhausted.
        config: fit window and significance.
    """
    with np.errstate(invalid="ignore"):
        age_h = ((times[:, -1:] - times) / 3600.0).T
    return hours_to_exhaustion_block(np.ascontiguousarray(age_h, dtype=np.float32),
                                     np.ascontiguousarray(values.T, dtype=np.float32),
                                     capacity, config).astype(np.float64)


@dataclass(frozen=True)
class FitBasis:
    """Powers of the (negative) sample ages inside the fit window, float64 (W, rows); shared
    by every column of the same windows."""

    x: FloatArray
    """Hours before the newest sample, negative, 0 outside the fit window."""
    x2: FloatArray
    x3: FloatArray
    x4: FloatArray
    inside: npt.NDArray[np.bool_]
    """Samples inside the fit window."""

    @classmethod
    def build(cls, age_h: npt.NDArray[np.float32], config: ExhaustionConfig) -> FitBasis:
        """The basis of (W, rows) ages in hours (NaN for padding)."""
        with np.errstate(invalid="ignore"):
            inside = age_h <= config.fit_window_s / 3600.0
        x = np.where(inside, -np.fmax(age_h.astype(np.float64), 0.0), 0.0)
        x2 = x * x
        return cls(x, x2, x2 * x, x2 * x2, inside)


def hours_to_exhaustion_block(age_h: npt.NDArray[np.float32], values: npt.NDArray[np.float32],
                              capacity: float, config: ExhaustionConfig | None = None,
                              basis: FitBasis | None = None) -> npt.NDArray[np.float32]:
    """:func:`hours_to_exhaustion` on the feature code's layout: (W, rows) float32, time along
    axis 0, ages in hours before each row's newest sample (NaN for padding).

    Everything is sums over time (one contiguous reduction each), then closed-form least
    squares per row: the fleet scorer calls this for 100,000 windows at once. ``basis``
    (:meth:`FitBasis.build`) shares the powers of the ages between columns.
    """
    config = config or ExhaustionConfig()
    basis = basis or FitBasis.build(age_h, config)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # Float64 sums (the parabola's normal equations need the precision), and values as a
        # share of the capacity, whether the column is a percentage or bytes of lag.
        known = values == values
        weight = (known & basis.inside).astype(np.float64)
        y = np.where(known, values.astype(np.float64) * (1.0 / capacity), 0.0) * weight
        n = weight.sum(axis=0)
        sx, sy = _dot(weight, basis.x), y.sum(axis=0)
        sxx, sxy, syy = _dot(weight, basis.x2), _dot(y, basis.x), _dot(y, y)
        sx3, sx4, sx2y = _dot(weight, basis.x3), _dot(weight, basis.x4), _dot(y, basis.x2)
        oldest = (basis.x * weight).min(axis=0)
        # Straight line.
        cxx = sxx - sx * sx / n
        cxy = sxy - sx * sy / n
        cyy = syy - sy * sy / n
        slope = cxy / cxx
        level = sy / n - slope * sx / n
        residual = np.fmax(cyy - slope * cxy, 0.0)
        stderr = np.sqrt(residual / np.fmax(n - 2, 1.0) / cxx)
        line = (1.0 - level) / slope
        # Parabola c0 + c1 x + c2 x^2, by Cramer's rule on the normal equations.
        a = [[n, sx, sxx], [sx, sxx, sx3], [sxx, sx3, sx4]]
        b = [sy, sxy, sx2y]
        det = _det3(a)
        c0 = _det3([[b[0], a[0][1], a[0][2]], [b[1], a[1][1], a[1][2]],
                    [b[2], a[2][1], a[2][2]]]) / det
        c1 = _det3([[a[0][0], b[0], a[0][2]], [a[1][0], b[1], a[1][2]],
                    [a[2][0], b[2], a[2][2]]]) / det
        c2 = _det3([[a[0][0], a[0][1], b[0]], [a[1][0], a[1][1], b[1]],
                    [a[2][0], a[2][1], b[2]]]) / det
        # Residual of the parabola from the sums; the (2, 2) cofactor gives c2's variance.
        rss = np.fmax(syy - c0 * sy - c1 * sxy - c2 * sx2y, 0.0)
        var_c2 = rss / np.fmax(n - 3, 1.0) * (n * sxx - sx * sx) / det
        curved = (n >= 8) & (c2 > config.min_t * np.sqrt(np.fmax(var_c2, 0.0)))
        discriminant = c1 * c1 - 4.0 * c2 * (c0 - 1.0)
        root = (-c1 + np.sqrt(np.fmax(discriminant, 0.0))) / (2.0 * c2)
        hours = np.where(curved & (discriminant >= 0) & (root > 0), root, line)
    enough = (n >= config.min_samples) & (-oldest >= config.min_span_s / 3600.0) & (cxx > 0)
    rising = enough & (slope > config.min_t * stderr) & (slope > 0)
    out = np.where(rising, np.fmax(hours, 0.0), np.nan)
    out[enough & (level >= 1.0)] = 0.0
    return out.astype(np.float32)


def _dot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Per-row (axis 1) dot product over time (axis 0)."""
    return np.einsum("ij,ij->j", a, b)


def _det3(m: list[list[FloatArray]]) -> FloatArray:
    """Determinant of a 3x3 matrix whose entries are per-row arrays."""
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def soonest(times: FloatArray, values: Mapping[str, FloatArray],
            config: ExhaustionConfig | None = None) -> tuple[FloatArray, list[str | None]]:
    """Soonest forecast over every exhaustible column of each row.

    Returns:
        Hours (NaN: none established) and the column key it belongs to (``None``: none).
    """
    config = config or ExhaustionConfig()
    rows = times.shape[0]
    best = np.full(rows, np.nan)
    which: list[str | None] = [None] * rows
    for key in exhaustion_columns(list(values)):
        hours = hours_to_exhaustion(times, values[key], config.capacity(column_kind(key)),
                                    config)
        better = np.flatnonzero(~(hours >= best) & (hours == hours))  # NaN best loses
        best[better] = hours[better]
        for row in better.tolist():
            which[row] = key
    return best, which


def forecasts(times: FloatArray, values: Mapping[str, FloatArray],
              config: ExhaustionConfig | None = None) -> list[Forecast | None]:
    """The soonest forecast within ``config.cap_h`` of each row (``None``: nothing runs out
    soon), ready for :func:`forecast_text`."""
    config = config or ExhaustionConfig()
    hours, which = soonest(times, values, config)
    return [Forecast(key, float(h)) if key is not None and h <= config.cap_h else None
            for h, key in zip(hours.tolist(), which, strict=True)]


def describe_hours(hours: float) -> str:
    """``0.63`` → ``38 min``; ``2.5`` → ``2.5 h``; ``50`` → ``2.1 days``; ``0`` → ``now``."""
    if not math.isfinite(hours):
        return "never"
    minutes = hours * 60.0
    if minutes < 1.0:
        return "now"
    if minutes < 90.0:
        return f"{minutes:.0f} min"
    if hours < 36.0:
        return f"{hours:.1f} h"
    return f"{hours / 24.0:.1f} days"


def forecast_text(forecast: Forecast) -> str:
    """The sentence fragment for a decision's reason: ``disk full in 38 min``, or
    ``disk full (/var) in 38 min`` for a labelled column; ``disk full now`` at capacity."""
    _, _, label = forecast.column.partition(":")
    what = f"{forecast.phrase} ({label})" if label else forecast.phrase
    when = describe_hours(forecast.hours)
    return f"{what} now" if when == "now" else f"{what} in {when}"
