"""Causal features of metric windows, vectorised over many instances (or many time steps).

The unit of work is a *window*: the last ``W`` samples of one instance, oldest first, with
the decision time being the timestamp of the newest column. Every feature of a row is
computed from that row alone, so a feature at time *t* can only see data up to *t*; a whole
series is scored by sliding a window over it (:func:`series_features`), a fleet by stacking
one window per instance (:func:`window_features`). Both run the same code, so the worker,
the CLI and training agree.

Windows are defined in *time* (``short_window_s``, ``long_window_s``), not in samples, which
keeps features comparable under gaps and irregular sampling. Missing values are NaN; a metric
that is absent altogether yields NaN features, which LightGBM treats as "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from models.metrics import METRIC_SPECS, METRICS, FloatArray

Float32Array = npt.NDArray[np.float32]

SCALE_FREE = (
    "z_last",
    "ewma_dev",
    "slope_short_rel",
    "slope_long_rel",
    "roc_rel",
    "level_shift",
    "cv",
    "missing_frac",
    "staleness_s",
)
"""Features every metric gets; they do not depend on the metric's unit."""

ABSOLUTE = ("last", "mean_long", "max_long", "slope_long", "hours_to_threshold")
"""Extra features of metrics with a known scale and threshold."""

HOURS_TO_THRESHOLD_CAP = 48.0
"""Time-to-threshold forecasts are capped here; "never" and "in two days" mean the same."""

_CHUNK_ROWS = 4096


@dataclass(frozen=True)
class FeatureConfig:
    """Window lengths; part of a model's identity (the predictor refuses a mismatch)."""

    short_window_s: float = 1800.0
    """Short window: 30 minutes, for what just happened."""
    long_window_s: float = 10800.0
    """Long window: 3 hours, the baseline the present is compared to."""
    ewma_tau_s: float = 3600.0
    """Time constant of the exponentially weighted moving average."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict for model metadata."""
        return asdict(self)


def feature_names() -> list[str]:
    """Column names of the feature matrix, in order."""
    names: list[str] = []
    for spec in METRIC_SPECS:
        names += [f"{spec.name}__{f}" for f in SCALE_FREE]
        if spec.threshold is not None:
            names += [f"{spec.name}__{f}" for f in ABSOLUTE]
    return names


FEATURE_NAMES: tuple[str, ...] = tuple(feature_names())
"""The feature list every model trained by this code uses."""


def _metric_block(
    values: Float32Array, shared: _Shared, valid_min: float, threshold: float | None
) -> list[Float32Array]:
    """Features of one metric; ``values`` is (W, rows), time along axis 0, NaN = missing.

    This is the hot loop of fleet scoring. Time runs along axis 0 so every reduction is a
    handful of contiguous vector operations, and masks are 0/1 weights instead of
    ``np.where``/``nan*`` calls, which are several times slower.
    """
    width, rows = values.shape
    idx = np.arange(rows)
    weight = ((values == values) & shared.in_long).astype(np.float32)  # NaN != NaN
    # NaN -> valid_min (finite), then the weight zeroes it and everything outside the window.
    filled = np.fmax(values, np.float32(valid_min)) * weight
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        n_long = weight.sum(axis=0)
        mean_long = filled.sum(axis=0) / n_long
        centred = (filled - mean_long) * weight
        std_long = np.sqrt(_dot(centred, centred) / n_long)
        weight_short = weight * shared.in_short
        n_short = weight_short.sum(axis=0)
        mean_short = _dot(weight_short, filled) / n_short
        # The scale every relative feature divides by: spread, or 1 % of the level when the
        # series is flat, so a constant series with one wobble does not explode to infinity.
        scale = std_long + np.float32(0.01) * np.abs(mean_long) + np.float32(1e-9)

        # Slopes are invariant to shifting y, so the centred values serve both windows.
        slope_long = _slope(
            n_long, _dot(weight, shared.x), _dot(weight, shared.x2), _dot(shared.x, centred),
            centred.sum(axis=0),
        )
        slope_short = _slope(
            n_short, _dot(weight_short, shared.x), _dot(weight_short, shared.x2),
            _dot(shared.x_short, centred), _dot(shared.in_short, centred),
        )
        # Exponentially time-weighted mean: a time-aware EWMA that gaps cannot confuse.
        ewma = _dot(filled, shared.decay) / _dot(weight, shared.decay)

        # Newest usable sample = highest position with weight 1; oldest in the short window
        # = highest reversed position.
        # Rows with no sample at all get index -1/W-1, harmless: they are blanked below.
        newest = (weight * shared.position).max(axis=0).astype(np.intp) - 1
        oldest_rank = (weight_short * shared.reversed_position).max(axis=0)
        first_short = width - np.maximum(oldest_rank, 1).astype(np.intp)
        last = values[newest, idx]
        staleness_s = shared.age_h[newest, idx] * np.float32(3600.0)
        dt_h = shared.age_h[first_short, idx] - shared.age_h[newest, idx]
        roc = (last - values[first_short, idx]) / dt_h
        roc[(n_short < 2) | ~(dt_h > 0)] = np.nan

        block = [
            np.clip((last - mean_long) / scale, -50, 50),
            np.clip((last - ewma) / scale, -50, 50),
            np.clip(slope_short / scale, -50, 50),
            np.clip(slope_long / scale, -50, 50),
            np.clip(roc / scale, -50, 50),
            np.clip((mean_short - mean_long) / scale, -50, 50),
            np.clip(std_long / (np.abs(mean_long) + np.float32(1e-9)), 0, 50),
            1.0 - n_long / shared.rows_in_long,
            staleness_s,
        ]
        if threshold is not None:
            # Thresholded metrics are never negative, so the zero-filled max is the true max.
            max_long = filled.max(axis=0)
            to_go = np.float32(threshold) - last
            hours = np.full(rows, HOURS_TO_THRESHOLD_CAP, dtype=np.float32)
            rising = slope_long > 0
            hours[rising] = np.minimum(to_go[rising] / slope_long[rising], hours[rising])
            hours[to_go <= 0] = 0.0
            block += [last, mean_long, max_long, slope_long, hours]
    # Rows without a single usable sample: every feature unknown (NaN) for LightGBM.
    empty = n_long == 0
    for column in block:
        column[empty] = np.nan
    return block


def _dot(a: Float32Array, b: Float32Array) -> Float32Array:
    """Per-row (axis 1) dot product over time (axis 0) without a temporary."""
    return np.einsum("ij,ij->j", a, b)


def _slope(n: Float32Array, sx: Float32Array, sxx: Float32Array, sxy: Float32Array,
           sy: Float32Array) -> Float32Array:
    """Least-squares slope from its sums; NaN with fewer than two points or no spread in x."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sxx_centred = sxx - sx * sx / n
        slope: Float32Array = ((sxy - sx * sy / n) / sxx_centred).astype(np.float32)
    slope[~(n >= 2) | ~(sxx_centred > 1e-9)] = np.nan
    return slope


@dataclass
class _Shared:
    """Per-chunk arrays every metric reuses, all (W, rows): ages, window masks, slope x."""

    age_h: Float32Array
    in_long: npt.NDArray[np.bool_]
    in_short: Float32Array
    x: Float32Array
    x2: Float32Array
    x_short: Float32Array
    decay: Float32Array
    rows_in_long: Float32Array
    position: Float32Array
    reversed_position: Float32Array

    @classmethod
    def build(cls, times: FloatArray, config: FeatureConfig) -> _Shared:
        """Shared arrays for ``times`` given as (W, rows)."""
        width = times.shape[0]
        with np.errstate(invalid="ignore"):
            age_s = times[-1] - times
            # NaN (padding) compares False, so padding is never inside a window.
            in_long = age_s <= config.long_window_s
            in_short = (age_s <= config.short_window_s).astype(np.float32)
        long_f = in_long.astype(np.float32)
        # fmax turns the NaN ages of padding into 0 (they are masked out anyway).
        age_h = np.fmax(age_s.astype(np.float32) / np.float32(3600.0), np.float32(0.0))
        # x = hours before the decision time (<= 0), zero outside the window.
        x = -age_h * long_f
        decay = np.exp(-age_h / np.float32(config.ewma_tau_s / 3600.0)) * long_f
        position = np.arange(1, width + 1, dtype=np.float32)[:, None]
        return cls(
            age_h=age_h, in_long=in_long, in_short=in_short, x=x, x2=x * x,
            x_short=x * in_short, decay=decay, rows_in_long=long_f.sum(axis=0),
            position=position, reversed_position=position[::-1].copy(),
        )


def window_features(
    times: FloatArray, values: Mapping[str, FloatArray], config: FeatureConfig | None = None
) -> Float32Array:
    """Features at the newest column of each row.

    Args:
        times: (rows, W) epoch seconds, oldest first, NaN for padding; the last column of each
            row must be a real timestamp (the decision time).
        values: canonical metric name → (rows, W) sanitized values; absent metrics may be
            left out.
        config: window lengths.

    Returns:
        (rows, len(FEATURE_NAMES)) float32 matrix (Fortran order, which LightGBM reads
        without a copy).
    """
    config = config or FeatureConfig()
    rows = times.shape[0]
    out = np.empty((len(FEATURE_NAMES), rows), dtype=np.float32)
    # Chunks keep every temporary in cache: for a 100k-instance fleet, whole-batch
    # temporaries cost more in page faults than in arithmetic.
    for start in range(0, rows, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, rows)
        shared = _Shared.build(np.ascontiguousarray(times[start:stop].T), config)
        column = 0
        for spec in METRIC_SPECS:
            width = len(SCALE_FREE) + (len(ABSOLUTE) if spec.threshold is not None else 0)
            metric_values = values.get(spec.name)
            if metric_values is None:
                out[column : column + width, start:stop] = np.nan
            else:
                block_input = np.ascontiguousarray(metric_values[start:stop].T, dtype=np.float32)
                block = _metric_block(block_input, shared, spec.valid_min, spec.threshold)
                for offset, feature in enumerate(block):
                    out[column + offset, start:stop] = feature
            column += width
    return out.T


def series_features(
    times: FloatArray,
    values: Mapping[str, FloatArray],
    config: FeatureConfig | None = None,
    *,
    max_samples: int = 256,
    chunk_rows: int = 4096,
) -> Float32Array:
    """Causal features at every time step of one series.

    Row ``t`` sees samples ``t - max_samples + 1 .. t`` only, so the result for a prefix of the
    series equals the prefix of the result. ``max_samples`` caps the history per row; time
    windows longer than ``max_samples`` sampling steps are truncated.

    Args:
        times: (T,) epoch seconds, non-decreasing.
        values: canonical metric name → (T,) sanitized values.
        config: window lengths.
        max_samples: samples per window.
        chunk_rows: rows per batch, to bound memory on long traces.
    """
    unknown = set(values) - set(METRICS)
    if unknown:
        raise KeyError(f"unknown metrics {sorted(unknown)}")
    total = times.shape[0]
    pad = np.full(max_samples - 1, np.nan)
    padded_times = np.concatenate([pad, times])
    padded = {name: np.concatenate([pad, v]) for name, v in values.items()}
    parts: list[Float32Array] = []
    for start in range(0, total, chunk_rows):
        stop = min(start + chunk_rows, total)
        # Window of row t covers padded[t : t + max_samples]; contiguous copies keep each
        # row's arithmetic identical however the series is chunked.
        window_times = _windows(padded_times, start, stop, max_samples)
        window_values = {n: _windows(v, start, stop, max_samples) for n, v in padded.items()}
        parts.append(window_features(window_times, window_values, config))
    if not parts:
        return np.empty((0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def _windows(padded: FloatArray, start: int, stop: int, width: int) -> FloatArray:
    view = np.lib.stride_tricks.sliding_window_view(padded[start : stop + width - 1], width)
    return np.ascontiguousarray(view)
