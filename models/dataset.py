"""Labelled series → feature rows, with time-ordered splits.

Label of a row at time *t*: "the instance fails or degrades within the horizon H", i.e. a
failure (a labelled NAB anomaly, an ASD incident) falls in ``[t, t + H]`` or the instance is
failed at *t*. Splits are by time within every series — train on the past, stop early and
calibrate on the middle, test on the future — with an embargo of H before each boundary,
because a row's label looks H into the future and would otherwise leak the next split's
events. A series with an unlabelled prefix (ASD's 30 normal days) splits its labelled part
only; the prefix trains.

Sources: ``synthetic`` (the generated fleet), ``nab`` (NAB CloudWatch series, each also
presented as an unnamed ``other`` metric) and ``asd`` (19 unnamed metrics per server).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models.asd import AsdServer
from models.baselines import BaselineConfig, series_baseline_features
from models.features import FeatureConfig, Float32Array, series_features
from models.metrics import FloatArray, empty_counts, sanitize_all
from models.nab import NabSeries
from models.synthetic import SyntheticInstance

SPLITS = ("train", "valid", "calib", "test")
"""Split names, in time order."""

SPLIT_BOUNDS = (0.6, 0.75, 0.85)
"""Fractions of each series' time span where valid, calib and test begin."""

TRAINING_MAX_SAMPLES = 64
"""Samples per feature window in training: 64 x 5 min covers the 3-hour long window."""


@dataclass
class LabelledSeries:
    """One series with sanitized values and a label per row."""

    name: str
    """Instance or file name."""
    source: str
    """``synthetic``, ``nab`` or ``asd``."""
    times: FloatArray
    """Epoch seconds."""
    values: dict[str, FloatArray]
    """Canonical metric → sanitized values."""
    labels: npt.NDArray[np.bool_]
    """True = fails or degrades within the horizon."""
    ignored: dict[str, int] = field(default_factory=empty_counts)
    """Values sanitisation dropped, by kind."""
    labelled_from: float | None = None
    """Rows before this time carry no labels of their own (assumed normal); only the part
    after it is split into train/valid/calib/test. ``None``: the whole series is labelled."""


@dataclass
class Dataset:
    """Feature rows of many series with their labels and split."""

    features: Float32Array
    """(rows, features)."""
    labels: npt.NDArray[np.bool_]
    """(rows,)."""
    split: npt.NDArray[np.int8]
    """Index into :data:`SPLITS`; -1 = embargoed (unused)."""
    source: npt.NDArray[np.str_]
    """``synthetic``, ``nab`` or ``asd`` per row."""
    group: npt.NDArray[np.str_] | None = None
    """The series each row came from (for leave-series-out), when built from series."""

    def part(self, name: str) -> tuple[Float32Array, npt.NDArray[np.bool_]]:
        """Features and labels of one split."""
        mask = self.split == SPLITS.index(name)
        return self.features[mask], self.labels[mask]

    def digest(self) -> str:
        """SHA-256 of features, labels and splits: the identity of the training data."""
        sha = hashlib.sha256()
        for array in (self.features, self.labels, self.split):
            sha.update(np.ascontiguousarray(array).tobytes())
        return sha.hexdigest()


def from_synthetic(instance: SyntheticInstance, horizon_s: float) -> LabelledSeries:
    """Label a synthetic instance."""
    counts = empty_counts()
    values = sanitize_all(instance.values, counts)
    return LabelledSeries(instance.instance_id, "synthetic", instance.times, values,
                          instance.labels(horizon_s), counts)


def from_asd(server: AsdServer, horizon_s: float, lead_s: float | None = None) -> LabelledSeries:
    """Label an ASD server: positive from ``lead_s`` (default: the horizon) before each
    incident to its end; the 30 unlabelled days are negatives that only train."""
    counts = empty_counts()
    values = sanitize_all(server.values, counts)
    return LabelledSeries(server.name, "asd", server.times, values,
                          server.training_labels(horizon_s, lead_s), counts,
                          labelled_from=server.labelled_from)


def from_nab(series: NabSeries, horizon_s: float, metric: str | None = None) -> LabelledSeries:
    """Label a NAB series, optionally presenting it as another metric (e.g. ``other``)."""
    counts = empty_counts()
    name = metric or series.metric
    values = sanitize_all({name: series.values}, counts)
    return LabelledSeries(f"{series.name}:{name}", "nab", series.times, values,
                          series.training_labels(horizon_s), counts)


def split_index(times: FloatArray, horizon_s: float,
                labelled_from: float | None = None) -> npt.NDArray[np.int8]:
    """Split of every row of one series (see the module docstring)."""
    first = times[0] if labelled_from is None else max(float(times[0]), labelled_from)
    span = max(float(times[-1] - first), 1.0)
    position = (times - first) / span
    split = np.searchsorted(np.asarray(SPLIT_BOUNDS), position, side="right").astype(np.int8)
    split[position < 0] = 0  # the unlabelled prefix trains
    embargo = horizon_s / span
    for bound in SPLIT_BOUNDS:
        split[(position >= bound - embargo) & (position < bound)] = -1
    return split


def series_matrices(
    series: Sequence[LabelledSeries], config: FeatureConfig | None = None,
    baseline_config: BaselineConfig | None = None,
) -> list[Float32Array]:
    """Feature matrix of every series (baselines of all series stepped together, which is
    much faster than one by one and gives the same numbers)."""
    baselines = series_baseline_features([(s.times, s.values) for s in series],
                                         baseline_config)
    return [series_features(item.times, item.values, config, max_samples=TRAINING_MAX_SAMPLES,
                            baseline=baseline)
            for item, baseline in zip(series, baselines, strict=True)]


def build_dataset(
    series: Sequence[LabelledSeries], horizon_s: float, config: FeatureConfig | None = None,
    matrices: Sequence[Float32Array] | None = None,
) -> Dataset:
    """Features, labels and splits of every series, concatenated.

    Args:
        series: the labelled series.
        horizon_s: the label horizon (sets the embargo between splits).
        config: window lengths.
        matrices: feature matrices already computed by :func:`series_matrices` (same order).
    """
    if matrices is None:
        matrices = series_matrices(series, config)
    parts = []
    for item, features in zip(series, matrices, strict=True):
        parts.append((features, item.labels,
                      split_index(item.times, horizon_s, item.labelled_from),
                      np.full(item.times.shape, item.source),
                      np.full(item.times.shape, item.name)))
    return Dataset(
        features=np.concatenate([p[0] for p in parts]),
        labels=np.concatenate([p[1] for p in parts]),
        split=np.concatenate([p[2] for p in parts]),
        source=np.concatenate([p[3] for p in parts]),
        group=np.concatenate([p[4] for p in parts]),
    )
