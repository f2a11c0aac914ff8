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
    config = config or ExhaustionConfig()
    with np.errstate(invalid="ignore", divide="ignore"):
        age_h = (times[:, -1:] - times) / 3600.0
        weight = ((values == values) & (age_h <= config.fit_window_s / 3600.0)).astype(np.float64)
        x = -np.nan_to_num(age_h) * weight
        y = np.nan_to_num(values) * weight
        n = weight.sum(axis=1)
        mean_x = x.sum(axis=1) / n
        mean_y = y.sum(axis=1) / n
        dx = (x - mean_x[:, None]) * weight
        dy = (y - mean_y[:, None]) * weight
        sxx = (dx * dx).sum(axis=1)
        slope = (dx * dy).sum(axis=1) / sxx
        level = mean_y - slope * mean_x  # the line at x = 0, the newest sample
        residual = (dy - slope[:, None] * dx) * weight
        dof = np.maximum(n - 2, 1)
        stderr = np.sqrt((residual * residual).sum(axis=1) / dof / sxx)
        span_h = np.where(n > 0, (x * weight).min(axis=1, initial=0.0), 0.0)
        hours = (capacity - level) / slope
        quadratic = _quadratic_hours(x, y, weight, n, capacity, config.min_t)
    enough = (n >= config.min_samples) & (-span_h >= config.min_span_s / 3600.0) & (sxx > 0)
    rising = enough & (slope > config.min_t * stderr) & (slope > 0)
    hours = np.where(np.isfinite(quadratic), quadratic, hours)
    out = np.where(rising, np.maximum(hours, 0.0), np.nan)
    out[enough & (level >= capacity)] = 0.0
    return out


def _quadratic_hours(x: FloatArray, y: FloatArray, weight: FloatArray, n: FloatArray,
                     capacity: float, min_t: float) -> FloatArray:
    """Hours until ``c0 + c1 h + c2 h^2`` reaches the capacity, where the curvature ``c2`` is
    significantly positive; NaN elsewhere. Rows are fitted in one batched solve."""
    powers = [weight, x, x * x, x ** 3, x ** 4]
    sums = [p.sum(axis=1) for p in powers]
    normal = np.stack([np.stack([sums[i + j] for j in range(3)], axis=1) for i in range(3)],
                      axis=1)
    right = np.stack([(y).sum(axis=1), (x * y).sum(axis=1), (x * x * y).sum(axis=1)], axis=1)
    usable = (n >= 8) & (np.abs(np.linalg.det(normal)) > 1e-12)
    out = np.full(x.shape[0], np.nan)
    if not usable.any():
        return out
    inverse = np.linalg.inv(normal[usable])
    coef = np.einsum("nij,nj->ni", inverse, right[usable])
    fitted = coef[:, 0:1] + coef[:, 1:2] * x[usable] + coef[:, 2:3] * x[usable] ** 2
    residual = (y[usable] - fitted) * weight[usable]
    variance = (residual * residual).sum(axis=1) / np.maximum(n[usable] - 3, 1)
    c0, c1, c2 = coef[:, 0], coef[:, 1], coef[:, 2]
    curved = c2 > min_t * np.sqrt(np.maximum(variance * inverse[:, 2, 2], 0.0))
    discriminant = c1 * c1 - 4 * c2 * (c0 - capacity)
    root = (-c1 + np.sqrt(np.maximum(discriminant, 0.0))) / (2 * c2)
    hours = np.where(curved & (discriminant >= 0) & (root > 0), root, np.nan)
    out[np.flatnonzero(usable)] = hours
    return out


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
