"""What the per-instance baselines compute and how long they remember
(:mod:`models.baselines` holds the bank that learns them): the feature names, their
cross-column summaries and :class:`BaselineConfig`, which is part of a model's identity."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]

BASELINE_FEATURES = (
    "seasonal_z_max_abs",
    "seasonal_z_mean_abs",
    "seasonal_z_mean",
    "seasonal_frac_over_3",
    "seasonal_z_max_recent",
    "global_z_max_abs",
    "global_z_mean_abs",
    "novelty_spe",
    "novelty_t2",
    "novelty_spe_recent",
    "history_h",
)
"""Baseline features of one sample (summaries across columns, so any number of columns gives
the same vector). ``*_recent``: the largest of this sample and the two before it, so a
one-sample jolt is still visible to a policy that wants several high readings in a row."""

BASELINE_FEATURE_NAMES: tuple[str, ...] = tuple(f"baseline__{name}" for name in BASELINE_FEATURES)
"""Their names in the feature vector."""

SLOTS_PER_DAY = 24
DAYS_PER_WEEK = 7


@dataclass(frozen=True)
class BaselineConfig:
    """Memories and limits of the baselines; part of a model's identity."""

    daily_memory_samples: float = 84.0
    """Memory of an hour-of-day slot, in samples of that slot (7 days at 5-minute steps)."""
    weekly_memory_samples: float = 1152.0
    """Memory of a weekday offset, in samples of that weekday (4 weeks at 5-minute steps)."""
    global_memory_samples: float = 8640.0
    """Memory of the overall mean, variance and covariance (30 days at 5-minute steps). A
    week's memory learned incidents and load shifts into the normal subspace too quickly: on
    the ASD servers it flagged 9 of 55 incidents in time against 11 for 30 days
    (bench/baseline_libraries.py's measure)."""
    seasonal_min_samples: int = 6
    """A slot gives seasonal z only once it has learned from this many samples."""
    refresh_s: float = 86400.0
    """Novelty components are recomputed this often (and first after this much history)."""
    explained: float = 0.9
    """Share of the variance the kept components explain."""
    max_components: int = 6
    """At most this many components are kept."""
    min_columns: int = 3
    """Novelty needs at least this many columns with a value in the sample."""
    clip: float = 8.0
    """Standardised values are clipped here before they enter the covariance."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict for model metadata."""
        return asdict(self)


def column_summaries(seasonal_z: Float32Array, seasonal_known: npt.NDArray[np.bool_],
               global_z: Float32Array, global_known: npt.NDArray[np.bool_]) -> Float32Array:
    """Cross-column summaries of the z scores (columns 0-3 and 5-6 of the features)."""
    features = np.full((seasonal_z.shape[0], len(BASELINE_FEATURES)), np.nan, dtype=np.float32)
    abs_s = np.where(seasonal_known, np.abs(seasonal_z), np.float32(0.0))
    known_s = seasonal_known.sum(axis=1)
    abs_g = np.where(global_known, np.abs(global_z), np.float32(0.0))
    known_g = global_known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        features[:, 0] = abs_s.max(axis=1)
        features[:, 1] = abs_s.sum(axis=1) / known_s
        features[:, 2] = np.where(seasonal_known, seasonal_z, np.float32(0.0)).sum(axis=1) / known_s
        features[:, 3] = (abs_s > 3.0).sum(axis=1) / known_s
        features[:, 5] = abs_g.max(axis=1)
        features[:, 6] = abs_g.sum(axis=1) / known_g
    features[known_s == 0, :4] = np.nan
    features[known_g == 0, 5:7] = np.nan
    return features
