"""Train the failure model and write it with its metadata (``make model``).

Data: the synthetic fleet (:mod:`models.synthetic`) mixed with the NAB series, each NAB
series also presented as the unknown-scale metric ``other`` so the model learns to read a
single unnamed metric. Class imbalance is handled with ``scale_pos_weight``; early stopping
watches average precision on the validation split; an isotonic map fitted on the calibration
split turns LightGBM's weighted scores back into probabilities; the test split reports.

Usage: ``python -m models.training [--output PATH] [--instances N] [--days D] [--no-nab]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import sklearn
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.dataset import SPLITS, Dataset, LabelledSeries, build_dataset, from_nab, from_synthetic
from models.features import FEATURE_NAMES, FeatureConfig
from models.nab import load_nab, nab_available, nab_digest
from models.predictor import DEFAULT_MODEL_PATH, FORMAT_VERSION, metadata_path_for
from models.synthetic import FleetConfig, generate_fleet

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Everything that determines a trained model."""

    horizon_s: float = 7200.0
    """Predict failure or degradation within this many seconds."""
    fleet: FleetConfig = field(default_factory=FleetConfig)
    """Synthetic training fleet."""
    use_nab: bool = True
    """Mix in the NAB series (skipped with a warning when the data is absent)."""
    nab_weight: float = 0.5
    """Weight of NAB rows relative to synthetic ones (NAB labels are noisier)."""
    nab_exclude: tuple[str, ...] = ()
    """NAB files (``labels.json`` keys) left out entirely, so an evaluation can score them as
    series the model never saw (leave-series-out, :mod:`bench.eval`)."""
    num_leaves: int = 15
    """Tree size; small trees keep the model file small and scoring fast."""
    learning_rate: float = 0.1
    """Boosting step."""
    max_rounds: int = 100
    """Upper bound on trees: prediction cost grows with them, and the scoring goal
    (100,000 instance-scores per second per core) leaves room for about 100."""
    early_stopping_rounds: int = 20
    """Rounds without improvement of validation average precision before stopping."""
    min_child_samples: int = 50
    """Leaf size floor, against fitting noise."""
    num_threads: int = 2
    """Fixed, with ``deterministic``, so the same data gives the same model file."""


@dataclass
class TrainingResult:
    """Where the model went and what it measured."""

    model_path: Path
    """The LightGBM text model."""
    metadata_path: Path
    """Its metadata JSON."""
    metadata: dict[str, Any]
    """The metadata as written."""


def training_series(config: TrainingConfig) -> tuple[list[LabelledSeries], dict[str, str]]:
    """The labelled series to train on, and the digests of any NAB files used."""
    series = [from_synthetic(i, config.horizon_s) for i in generate_fleet(config.fleet)]
    digests: dict[str, str] = {}
    if config.use_nab:
        if nab_available():
            for nab in load_nab():
                if nab.name in config.nab_exclude:
                    continue
                series.append(from_nab(nab, config.horizon_s))
                if nab.metric != "other":
                    series.append(from_nab(nab, config.horizon_s, metric="other"))
            digests = nab_digest()
        else:
            log.warning("NAB data not found; training on the synthetic fleet only.")
    return series, digests


def _metrics(labels: np.ndarray, probability: Any) -> dict[str, float]:
    if labels.size == 0 or labels.min() == labels.max():
        return {"rows": int(labels.size), "positives": int(labels.sum())}
    return {
        "rows": int(labels.size),
        "positives": int(labels.sum()),
        "roc_auc": round(float(roc_auc_score(labels, probability)), 4),
        "average_precision": round(float(average_precision_score(labels, probability)), 4),
        "brier": round(float(brier_score_loss(labels, probability)), 5),
    }


def fit(dataset: Dataset, config: TrainingConfig) -> tuple[lgb.Booster, IsotonicRegression]:
    """Train the booster with early stopping and fit its calibration."""
    x_train, y_train = dataset.part("train")
    valid = dataset.split == SPLITS.index("valid")
    if (valid & (dataset.source == "synthetic")).any():
        # NAB labels mark anomalies, many without any precursor; letting them pick the
        # number of trees stops training after a handful. The fleet's failures decide.
        valid &= dataset.source == "synthetic"
    x_valid, y_valid = dataset.features[valid], dataset.labels[valid]
    positives = max(int(y_train.sum()), 1)
    params = {
        "objective": "binary",
        "metric": "average_precision",
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_child_samples": config.min_child_samples,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        # Positives are a few percent of rows; weight them up, calibrate afterwards.
        "scale_pos_weight": (y_train.size - positives) / positives,
        "seed": config.fleet.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
    }
    train_source = dataset.source[dataset.split == SPLITS.index("train")]
    weight = np.where(train_source == "nab", config.nab_weight, 1.0)
    train_set = lgb.Dataset(x_train, y_train.astype(int), weight=weight,
                            feature_name=list(FEATURE_NAMES), free_raw_data=False)
    valid_set = lgb.Dataset(x_valid, y_valid.astype(int), reference=train_set)
    booster = lgb.train(
        params, train_set, num_boost_round=config.max_rounds, valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    x_calib, y_calib = dataset.part("calib")
    raw = booster.predict(x_calib, num_iteration=booster.best_iteration)
    calibration = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    calibration.fit(raw, y_calib.astype(float))
    return booster, calibration


def write_model(model_path: Path, booster: lgb.Booster, calibration: IsotonicRegression,
                horizon_s: float, data: dict[str, Any], sections: dict[str, Any],
                ) -> dict[str, Any]:
    """Write the model file and its metadata (the fields :class:`Predictor` checks, then
    ``data``, ``sections`` in order, and library versions); returns the metadata. The one
    writer of the format, for ``make model`` and for retraining challengers alike."""
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_text(booster.model_to_string(num_iteration=booster.best_iteration))
    metadata = {
        "format_version": FORMAT_VERSION,
        "model_file": model_path.name,
        "model_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "feature_names": list(FEATURE_NAMES),
        "feature_config": FeatureConfig().to_dict(),
        "horizon_s": horizon_s,
        "best_iteration": booster.best_iteration,
        "calibration": {
            "method": "isotonic",
            "raw": [float(x) for x in calibration.X_thresholds_],
            "calibrated": [float(y) for y in calibration.y_thresholds_],
        },
        "data": data,
        **sections,
        "versions": {"lightgbm": lgb.__version__, "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__},
    }
    metadata_path_for(model_path).write_text(json.dumps(metadata, indent=1) + "\n")
    return metadata


def train(config: TrainingConfig, model_path: Path = DEFAULT_MODEL_PATH) -> TrainingResult:
    """Build the data, train, calibrate, evaluate and write model + metadata."""
    series, digests = training_series(config)
    dataset = build_dataset(series, config.horizon_s)
    booster, calibration = fit(dataset, config)
    evaluation: dict[str, Any] = {}
    for name in SPLITS:
        mask = dataset.split == SPLITS.index(name)
        raw = booster.predict(dataset.features[mask], num_iteration=booster.best_iteration)
        evaluation[name] = {
            "raw": _metrics(dataset.labels[mask], raw),
            "calibrated": _metrics(dataset.labels[mask], calibration.predict(raw)),
        }
        for source in ("synthetic", "nab"):
            part = mask & (dataset.source == source)
            if part.any() and name == "test":
                raw_part = booster.predict(dataset.features[part],
                                           num_iteration=booster.best_iteration)
                evaluation[f"test_{source}"] = _metrics(dataset.labels[part],
                                                        calibration.predict(raw_part))
    data = {
        "sha256": dataset.digest(),
        "rows": int(dataset.labels.size),
        "positives": int(dataset.labels.sum()),
        "series": len(series),
        "fleet": config.fleet.to_dict(),
        "nab_files": digests,
    }
    metadata = write_model(model_path, booster, calibration, config.horizon_s, data, {
        "training": {k: v for k, v in asdict(config).items() if k != "fleet"},
        "evaluation": evaluation,
    })
    metadata_path = metadata_path_for(model_path)
    return TrainingResult(model_path, metadata_path, metadata)


def main(argv: Sequence[str] | None = None) -> int:
    """``make model``: train the default model into ``models/artifacts``."""
    parser = argparse.ArgumentParser(prog="python -m models.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--instances", type=int, default=FleetConfig().instances)
    parser.add_argument("--days", type=float, default=FleetConfig().days)
    parser.add_argument("--seed", type=int, default=FleetConfig().seed)
    parser.add_argument("--no-nab", action="store_true", help="synthetic fleet only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fleet = replace(FleetConfig(), instances=args.instances, days=args.days, seed=args.seed)
    result = train(TrainingConfig(fleet=fleet, use_nab=not args.no_nab), args.output)
    test = result.metadata["evaluation"]["test"]["calibrated"]
    print(
        f"wrote {result.model_path} ({result.model_path.stat().st_size / 1e6:.2f} MB, "
        f"{result.metadata['best_iteration']} trees) and {result.metadata_path.name}; "
        f"test split: {json.dumps(test)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
