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

The vector has a fixed size whatever the instance reports (:data:`FEATURE_NAMES`):

- **named slots**: the scale-free features (and, for kinds with a threshold, the absolute
  ones) of the first column of every named kind (:data:`models.metrics.NAMED_KINDS`);
- **column summaries**: the scale-free features of *every* column (named or ``other``,
  however many) summarised across columns (largest magnitude, mean magnitude, signed mean,
  share of columns beyond 3), so 19 unnamed metrics do not mean 19 times the model;
- **exhaustion**: hours until the soonest resource runs out (:mod:`models.exhaustion`);
- **baselines**: the instance against its own history (:mod:`models.baselines`); a series
  computes them from its first row, a fleet window takes them from a
  :class:`~models.baselines.BaselineBank` (NaN without one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from models.baselines import (
    BASELINE_FEATURE_NAMES,
    BaselineConfig,
    series_baseline_features,
)
from models.exhaustion import (
    ExhaustionConfig,
    FitBasis,
    exhaustion_columns,
    hours_to_exhaustion_block,
)
from models.metrics import (
    NAMED_KINDS,
    SPEC_BY_NAME,
    FloatArray,
    check_columns,
    column_kind,
    ordered_columns,
)

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


SUMMARISED = ("z_last", "ewma_dev", "roc_rel", "level_shift", "slope_short_rel")
"""Scale-free features summarised across all columns."""

SUMMARIES = ("max_abs", "mean_abs", "mean")
"""How each summarised feature is summarised across columns."""

COLUMN_EXTRAS = ("z_last_frac_over_3", "missing_frac_mean", "columns")
"""Further cross-column features: share of columns whose ``z_last`` exceeds 3, the mean
share of missing samples, and how many columns had any sample in the long window."""


def _slot_width(kind: str) -> int:
    return len(SCALE_FREE) + (len(ABSOLUTE) if SPEC_BY_NAME[kind].threshold is not None else 0)


def feature_names() -> list[str]:
    """Column names of the feature matrix, in order."""
    names: list[str] = []
    for kind in NAMED_KINDS:
        names += [f"{kind}__{f}" for f in SCALE_FREE]
        if SPEC_BY_NAME[kind].threshold is not None:
            names += [f"{kind}__{f}" for f in ABSOLUTE]
    names += [f"columns__{f}_{how}" for f in SUMMARISED for how in SUMMARIES]
    names += [f"columns__{f}" for f in COLUMN_EXTRAS]
    names += ["exhaustion__hours_min"]
    return names


WINDOW_FEATURE_NAMES: tuple[str, ...] = tuple(feature_names())
"""Features computed from the window alone."""

FEATURE_NAMES: tuple[str, ...] = WINDOW_FEATURE_NAMES + BASELINE_FEATURE_NAMES
"""The feature list every model trained by this code uses."""

_SUMMARY_START = len(WINDOW_FEATURE_NAMES) - 1 - len(SUMMARISED) * len(SUMMARIES) - len(
    COLUMN_EXTRAS)
_SLOT_START: dict[str, int] = {}
_position = 0
for _kind in NAMED_KINDS:
    _SLOT_START[_kind] = _position
    _position += _slot_width(_kind)
del _position, _kind


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
    times: FloatArray,
    values: Mapping[str, FloatArray],
    config: FeatureConfig | None = None,
    *,
    baseline: Float32Array | None = None,
    exhaustion: ExhaustionConfig | None = None,
) -> Float32Array:
    """Features at the newest column of each row.

    Args:
        times: (rows, W) epoch seconds, oldest first, NaN for padding; the last column of each
            row must be a real timestamp (the decision time).
        values: column key → (rows, W) sanitized values; absent columns may be left out.
        config: window lengths.
        baseline: (rows, len(BASELINE_FEATURE_NAMES)) baseline features of the newest samples
            (:meth:`models.baselines.BaselineBank.features`); NaN when not given.
        exhaustion: forecast settings.

    Returns:
        (rows, len(FEATURE_NAMES)) float32 matrix (Fortran order, which LightGBM reads
        without a copy).

    Raises:
        KeyError: a key is not a valid column key.
    """
    config = config or FeatureConfig()
    keys = ordered_columns(values)
    rows = times.shape[0]
    out = np.empty((len(FEATURE_NAMES), rows), dtype=np.float32)
    out[_SUMMARY_START:] = np.nan
    named: dict[str, str] = {}
    for key in keys:
        named.setdefault(column_kind(key), key)
    summary = _SummaryBuilder(len(keys), rows)
    exhaustion = exhaustion or ExhaustionConfig()
    exhaustible = exhaustion_columns(keys)
    soonest_row = len(WINDOW_FEATURE_NAMES) - 1
    # Chunks keep every temporary in cache: for a 100k-instance fleet, whole-batch
    # temporaries cost more in page faults than in arithmetic.
    for start in range(0, rows, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, rows)
        shared = _Shared.build(np.ascontiguousarray(times[start:stop].T), config)
        filled = set()
        soonest_h = np.full(stop - start, np.nan, dtype=np.float32)
        basis = FitBasis.build(shared.age_h, exhaustion) if exhaustible else None
        for position, key in enumerate(keys):
            kind = column_kind(key)
            spec = SPEC_BY_NAME[kind]
            block_input = np.ascontiguousarray(values[key][start:stop].T, dtype=np.float32)
            is_slot = named.get(kind) == key and kind in _SLOT_START
            block = _metric_block(block_input, shared, spec.valid_min,
                                  spec.threshold if is_slot else None)
            summary.add(position, start, stop, block)
            if key in exhaustible:
                hours = hours_to_exhaustion_block(shared.age_h, block_input,
                                                  exhaustion.capacity(kind), exhaustion, basis)
                soonest_h = np.fmin(soonest_h, hours)
            if is_slot:
                column = _SLOT_START[kind]
                for offset, feature in enumerate(block):
                    out[column + offset, start:stop] = feature
                filled.add(kind)
        for kind, column in _SLOT_START.items():
            if kind not in filled:
                out[column : column + _slot_width(kind), start:stop] = np.nan
        if exhaustible:  # no rise anywhere reads as "not within the cap"
            out[soonest_row, start:stop] = np.where(
                np.isnan(soonest_h), HOURS_TO_THRESHOLD_CAP,
                np.minimum(soonest_h, HOURS_TO_THRESHOLD_CAP))
    summary.write(out, _SUMMARY_START)
    if baseline is not None:
        out[len(WINDOW_FEATURE_NAMES):] = baseline.T
    return out.T


class _SummaryBuilder:
    """Collects the summarised features of every column, then writes the summaries."""

    def __init__(self, columns: int, rows: int) -> None:
        self.values = np.full((len(SUMMARISED), columns, rows), np.nan, dtype=np.float32)
        self.missing = np.full((columns, rows), np.nan, dtype=np.float32)

    def add(self, position: int, start: int, stop: int, block: list[Float32Array]) -> None:
        for i, name in enumerate(SUMMARISED):
            self.values[i, position, start:stop] = block[SCALE_FREE.index(name)]
        self.missing[position, start:stop] = block[SCALE_FREE.index("missing_frac")]

    def write(self, out: Float32Array, first: int) -> None:
        values = self.values
        known = values == values
        count = known.sum(axis=1).astype(np.float32)  # (features, rows)
        magnitude = np.where(known, np.abs(values), np.float32(0.0))
        signed = np.where(known, values, np.float32(0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            row = first
            for i in range(len(SUMMARISED)):
                out[row] = np.where(count[i] > 0, magnitude[i].max(axis=0, initial=0.0), np.nan)
                out[row + 1] = magnitude[i].sum(axis=0) / count[i]
                out[row + 2] = signed[i].sum(axis=0) / count[i]
                row += len(SUMMARIES)
            z = SUMMARISED.index("z_last")
            out[row] = (magnitude[z] > 3.0).sum(axis=0) / count[z]
            missing_known = self.missing == self.missing
            out[row + 1] = (np.where(missing_known, self.missing, np.float32(0.0)).sum(axis=0)
                            / missing_known.sum(axis=0))
            out[row + 2] = count[z]


def series_features(
    times: FloatArray,
    values: Mapping[str, FloatArray],
    config: FeatureConfig | None = None,
    *,
    max_samples: int = 256,
    chunk_rows: int = 4096,
    baseline: Float32Array | bool = True,
    baseline_config: BaselineConfig | None = None,
) -> Float32Array:
    """Causal features at every time step of one series.

    Row ``t`` sees samples ``t - max_samples + 1 .. t`` only for the window features, and
    rows ``0 .. t`` for the baselines (which start from the first row), so the result for a
    prefix of the series equals the prefix of the result. ``max_samples`` caps the history per
    window; time windows longer than ``max_samples`` sampling steps are truncated.

    Args:
        times: (T,) epoch seconds, non-decreasing.
        values: column key → (T,) sanitized values.
        config: window lengths.
        max_samples: samples per window.
        chunk_rows: rows per batch, to bound memory on long traces.
        baseline: ``True`` computes the baseline features here; ``False`` leaves them NaN;
            an array passes precomputed ones ((T, len(BASELINE_FEATURE_NAMES)), e.g. from
            :func:`models.baselines.series_baseline_features` over many series at once).
        baseline_config: baseline memories (when computed here).

    Raises:
        KeyError: a key is not a valid column key.
    """
    check_columns(values)
    total = times.shape[0]
    if baseline is True:
        baselines: Float32Array | None = series_baseline_features(
            [(times, values)], baseline_config)[0]
    elif baseline is False:
        baselines = None
    else:
        baselines = baseline
    pad = np.full(max_samples - 1, np.nan)
    padded_times = np.concatenate([pad, times])
    padded = {name: np.concatenate([pad, v]) for name, v in values.items()}
    parts: list[Float32Array] = []
    for start in range(0, total, chunk_rows):
        stop = min(start + chunk_rows, total)
        # Window of row t covers padded[t : t + max_samples]; contiguous copies keep each
        # row's arithmetic identical however the series is chunked.
        window_times = sliding_windows(padded_times, start, stop, max_samples)
        window_values = {n: sliding_windows(v, start, stop, max_samples)
                         for n, v in padded.items()}
        parts.append(window_features(
            window_times, window_values, config,
            baseline=None if baselines is None else baselines[start:stop]))
    if not parts:
        return np.empty((0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def sliding_windows(padded: FloatArray, start: int, stop: int, width: int) -> FloatArray:
    """Rows ``start .. stop`` of the width-``width`` sliding windows over ``padded`` (which
    carries ``width - 1`` padding values in front), as a contiguous (rows, width) array."""
    view = np.lib.stride_tricks.sliding_window_view(padded[start : stop + width - 1], width)
    return np.ascontiguousarray(view)
