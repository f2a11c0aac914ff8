"""Champion vs challenger: train a challenger on outcome history plus the base data, compare.

The challenger is trained by :func:`models.training.fit` (the same LightGBM training,
early stopping and centered isotonic calibration as ``make model``) on the base data — the synthetic
fleet and NAB, split by time within every series — plus one row per resolved outcome record:
the features of the metric window the decision was made on, labelled "failed or degraded
within the horizon". Outcome rows are split by time too: the oldest 60 % train, the newest
15 % are held out.

**Promotion rule.** Both models are scored on the held-out rows (the ``test`` split: the
last 15 % of every series' time span after an embargo of one horizon, and the newest outcome
records), which neither model trained on as long as the base data config is unchanged. The
metric is *average precision* (area under the precision-recall curve): failures are a few
percent of rows, where ROC AUC flatters and accuracy is meaningless, and the policy acts on
the top of the ranking. The challenger is promoted only if its average precision exceeds the
champion's by at least ``min_gain`` (0.01 by default) and the held-out data holds at least
``min_heldout_positives`` failures, so noise never swaps models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from contracts.retraining import RetrainingConfig
from models.dataset import SPLIT_BOUNDS, SPLITS, Dataset, build_dataset
from models.features import FEATURE_NAMES, Float32Array, window_features
from models.metrics import column_kind, sanitize
from models.predictor import Predictor
from models.training import TRAINING_FLEET, TrainingConfig, fit, training_series, write_model

METRIC = "average_precision"
"""The metric promotions are decided on (see the module docstring)."""


@dataclass
class OutcomeExample:
    """A resolved outcome record as a training row."""

    at: float
    """Decision time (orders the rows for the time split)."""
    timestamps: list[float]
    """The window's sample times."""
    values: dict[str, list[float | None]]
    """Metric → values, as stored with the record."""
    failed: bool
    """The instance failed or degraded within the horizon."""


@dataclass
class Candidate:
    """A trained challenger and its held-out rows."""

    model_path: Path
    """Its model file (metadata beside it)."""
    heldout_path: Path
    """``.npz`` with the held-out ``features`` and ``labels``."""
    rows: int
    """Training data rows, all splits."""
    outcome_rows: int
    """Rows that came from outcome records."""
    heldout_rows: int
    """Held-out rows."""
    heldout_positives: int
    """Failures among them."""


def outcome_rows(examples: Sequence[OutcomeExample]) -> Dataset:
    """Feature rows of outcome records, split by decision time."""
    ordered = sorted(examples, key=lambda e: e.at)
    rows = np.zeros((len(ordered), len(FEATURE_NAMES)), dtype=np.float32)
    for i, example in enumerate(ordered):
        order = np.argsort(np.asarray(example.timestamps, dtype=np.float64), kind="stable")
        times = np.asarray(example.timestamps, dtype=np.float64)[order][None, :]
        values = {m: sanitize(m, raw)[order][None, :]
                  for m, raw in example.values.items()
                  if _is_column(m) and len(raw) == len(order)}
        rows[i] = window_features(times, values)[0]
    position = np.arange(len(ordered)) / max(len(ordered), 1)
    return Dataset(
        features=rows,
        labels=np.array([e.failed for e in ordered], dtype=bool),
        split=np.searchsorted(np.asarray(SPLIT_BOUNDS), position, side="right").astype(np.int8),
        source=np.full(len(ordered), "outcome"),
    )


def _is_column(key: str) -> bool:
    try:
        column_kind(key)
    except KeyError:
        return False
    return True


def training_config(config: RetrainingConfig) -> TrainingConfig:
    """The :class:`TrainingConfig` of a retraining run."""
    fleet = replace(TRAINING_FLEET, instances=config.instances, days=config.days,
                    seed=config.seed)
    return TrainingConfig(fleet=fleet, use_nab=config.use_nab, use_asd=config.use_nab,
                          num_threads=config.num_threads)


def build(config: RetrainingConfig, examples: Sequence[OutcomeExample]) -> Dataset:
    """Base data plus outcome rows, with labels permuted outside the test split if asked."""
    train_config = training_config(config)
    series, _ = training_series(train_config)
    base = build_dataset(series, train_config.horizon_s)
    extra = outcome_rows(examples)
    dataset = Dataset(
        features=np.concatenate([base.features, extra.features]),
        labels=np.concatenate([base.labels, extra.labels]),
        split=np.concatenate([base.split, extra.split]),
        source=np.concatenate([base.source, extra.source]),
    )
    if config.label_permutation_seed is not None:
        trainable = np.flatnonzero(dataset.split != SPLITS.index("test"))
        rng = np.random.default_rng(config.label_permutation_seed)
        dataset.labels[trainable] = dataset.labels[rng.permutation(trainable)]
    return dataset


def train_candidate(config: RetrainingConfig, examples: Sequence[OutcomeExample],
                    model_path: Path) -> Candidate:
    """Train a challenger into ``model_path`` (+ metadata) and save its held-out rows."""
    dataset = build(config, examples)
    train_config = training_config(config)
    booster, calibration = fit(dataset, train_config)
    write_model(model_path, booster, calibration, train_config.horizon_s,
                {"sha256": dataset.digest(), "rows": int(dataset.labels.size),
                 "positives": int(dataset.labels.sum()), "outcome_rows": len(examples)},
                {"retraining": asdict(config)})
    features, labels = dataset.part("test")
    heldout_path = model_path.with_name("heldout.npz")
    with heldout_path.open("wb") as handle:
        np.savez(handle, features=features, labels=labels)
    return Candidate(model_path, heldout_path, int(dataset.labels.size), len(examples),
                     int(labels.size), int(labels.sum()))


def score(predictor: Predictor, features: Float32Array, labels: np.ndarray) -> float:
    """The promotion metric of ``predictor`` on held-out rows."""
    if labels.size == 0 or labels.min() == labels.max():
        raise ValueError("held-out rows need both failures and non-failures to compare models")
    probability = predictor.predict(np.asfortranarray(features, dtype=np.float32))
    return round(float(average_precision_score(labels, probability)), 6)


def beats(champion_score: float, challenger_score: float, heldout_positives: int,
          config: RetrainingConfig) -> tuple[bool, str]:
    """The promotion rule; returns (promote, one sentence why)."""
    if heldout_positives < config.min_heldout_positives:
        return False, (f"only {heldout_positives} failures held out "
                       f"(< {config.min_heldout_positives}); not enough evidence")
    gain = challenger_score - champion_score
    verdict = "beats" if gain >= config.min_gain else "does not beat"
    return gain >= config.min_gain, (
        f"challenger {METRIC} {challenger_score:.4f} {verdict} champion {champion_score:.4f} "
        f"by the required {config.min_gain:g} (gain {gain:+.4f})")
