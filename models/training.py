"""Train the failure model and write it with its metadata (``make model``).

Data: real series first — the ASD application servers (19 unnamed metrics each, incidents
labelled by their operators) and the NAB CloudWatch series (each also presented as the
unknown-scale metric ``other``) — plus the synthetic fleet (:mod:`models.synthetic`), whose
weight is *chosen by validation on the real series*: a model is trained per candidate weight,
and among the weights that keep the synthetic validation score near its best, the one with
the best average precision on the real series' validation split wins
(:func:`choose_synthetic_weight`; the table goes into the metadata). Class imbalance is
handled with ``scale_pos_weight``; early stopping watches average precision on the validation
split; a centered isotonic map fitted on the calibration split turns LightGBM's weighted scores back
into probabilities; the test split reports.

Usage: ``python -m models.training [--output PATH] [--instances N] [--days D] [--no-nab]
[--no-asd]``.
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
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.asd import asd_available, asd_digest, load_asd
from models.baselines import BaselineConfig
from models.dataset import (
    SPLITS,
    Dataset,
    LabelledSeries,
    build_dataset,
    from_asd,
    from_nab,
    from_synthetic,
)
from models.features import FEATURE_NAMES, FeatureConfig
from models.nab import load_nab, nab_available, nab_digest
from models.predictor import (
    DEFAULT_MODEL_PATH,
    FORMAT_VERSION,
    Calibration,
    fit_calibration,
    metadata_path_for,
)
from models.synthetic import FleetConfig, generate_fleet

log = logging.getLogger(__name__)

TRAINING_FLEET = FleetConfig(fill_ups_per_day=0.15)
"""The synthetic training fleet: the default fleet plus disk fill-ups, so the model learns
what the exhaustion forecast means (the hold-out fleet of bench/eval.py has none)."""


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Everything that determines a trained model."""

    horizon_s: float = 7200.0
    """Predict failure or degradation within this many seconds."""
    fleet: FleetConfig = field(default_factory=lambda: TRAINING_FLEET)
    """Synthetic training fleet."""
    use_nab: bool = True
    """Mix in the NAB series (skipped with a warning when the data is absent)."""
    nab_weight: float = 0.5
    """Weight of NAB rows relative to synthetic ones (NAB labels are noisier)."""
    nab_exclude: tuple[str, ...] = ()
    """NAB files (``labels.json`` keys) left out entirely, so an evaluation can score them as
    series the model never saw (leave-series-out, :mod:`bench.eval`)."""
    use_asd: bool = True
    """Mix in the ASD servers (skipped with a warning when the data is absent)."""
    asd_weight: float = 1.0
    """Weight of ASD rows."""
    asd_exclude: tuple[str, ...] = ()
    """ASD servers (file stems, ``omi-1``) left out entirely (leave-server-out)."""
    asd_label_lead_s: float | None = None
    """How long before an ASD incident rows count as positive (default: the horizon)."""
    synthetic_weight: float | None = None
    """Weight of synthetic rows; ``None`` chooses it from :attr:`synthetic_weights` by
    validation on the real series (plain 1.0 when no real series are used)."""
    synthetic_weights: tuple[float, ...] = (0.3, 1.0, 3.0)
    """Candidates for the synthetic weight."""
    synthetic_tolerance: float = 0.02
    """A candidate weight qualifies when its synthetic validation average precision is within
    this of the best candidate's: the real series choose, among weights that keep what the
    fleet's failure modes taught (the synthetic hold-out must not get worse)."""
    num_leaves: int = 15
    """Tree size; small trees keep the model file small and scoring fast."""
    learning_rate: float = 0.1
    """Boosting step."""
    max_rounds: int = 80
    """Trees: prediction cost grows with them, and the scoring goal (100,000
    instance-scores per second per core with 10 named metrics) leaves room for about 80."""
    early_stopping_rounds: int | None = None
    """Rounds without improvement of validation average precision before stopping; ``None``
    trains all :attr:`max_rounds`. Off by default: on the real series the validation split
    holds a handful of incidents per server, its average precision peaks by chance after
    10-20 trees, and models stopped there caught fewer than half the incidents in time that
    80-tree models caught, leave-server-out (docs/model.md)."""
    min_child_samples: int = 50
    """Leaf size floor, against fitting noise."""
    num_threads: int = 1
    """Fixed, with ``deterministic``, so the same data gives the same model file; one thread,
    because training runs beside the workers and tests it must not slow down."""


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
    """The labelled series to train on, and the digests of any real data files used."""
    series = [from_synthetic(i, config.horizon_s) for i in generate_fleet(config.fleet)]
    digests: dict[str, str] = {}
    if config.use_asd:
        if asd_available():
            series += [from_asd(server, config.horizon_s, config.asd_label_lead_s)
                       for server in load_asd() if server.name not in config.asd_exclude]
            digests.update(asd_digest())
        else:
            log.warning("ASD data not found; training without it.")
    if config.use_nab:
        if nab_available():
            for nab in load_nab():
                if nab.name in config.nab_exclude:
                    continue
                series.append(from_nab(nab, config.horizon_s))
                if nab.metric != "other":
                    series.append(from_nab(nab, config.horizon_s, metric="other"))
            digests.update(nab_digest())
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


def row_weights(source: np.ndarray, config: TrainingConfig, synthetic_weight: float
                ) -> np.ndarray:
    """Training weight of every row, by source."""
    weight = np.ones(source.shape, dtype=np.float64)
    weight[source == "synthetic"] = synthetic_weight
    weight[source == "nab"] = config.nab_weight
    weight[source == "asd"] = config.asd_weight
    return weight


def fit(dataset: Dataset, config: TrainingConfig, synthetic_weight: float | None = None
        ) -> tuple[lgb.Booster, Calibration]:
    """Train the booster with early stopping and fit its calibration."""
    weight_synthetic = (config.synthetic_weight if synthetic_weight is None
                        else synthetic_weight)
    if weight_synthetic is None:
        weight_synthetic = 1.0
    weights = row_weights(dataset.source, config, weight_synthetic)
    train_rows = (dataset.split == SPLITS.index("train")) & (weights > 0)
    x_train, y_train = dataset.features[train_rows], dataset.labels[train_rows]
    valid = (dataset.split == SPLITS.index("valid")) & (weights > 0)
    if (valid & (dataset.source != "nab")).any():
        # NAB labels mark anomalies, many without any precursor; letting them pick the
        # number of trees stops training after a handful. Incidents and failures decide.
        valid &= dataset.source != "nab"
    x_valid, y_valid = dataset.features[valid], dataset.labels[valid]
    positives = max(float((weights[train_rows] * y_train).sum()), 1.0)
    negatives = float((weights[train_rows] * ~y_train).sum())
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
        "scale_pos_weight": negatives / positives,
        "seed": config.fleet.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
    }
    train_set = lgb.Dataset(x_train, y_train.astype(int), weight=weights[train_rows],
                            feature_name=list(FEATURE_NAMES), free_raw_data=False)
    valid_set = lgb.Dataset(x_valid, y_valid.astype(int), weight=weights[valid],
                            reference=train_set)
    booster = lgb.train(
        params, train_set, num_boost_round=config.max_rounds, valid_sets=[valid_set],
        callbacks=([lgb.early_stopping(config.early_stopping_rounds, verbose=False)]
                   if config.early_stopping_rounds else []),
    )
    if not config.early_stopping_rounds:
        booster.best_iteration = booster.current_iteration()
    calib = (dataset.split == SPLITS.index("calib")) & (weights > 0)
    raw = np.asarray(booster.predict(dataset.features[calib],
                                     num_iteration=booster.best_iteration), dtype=np.float64)
    calibration = fit_calibration(raw, dataset.labels[calib].astype(float), weights[calib])
    return booster, calibration


def choose_synthetic_weight(dataset: Dataset, config: TrainingConfig
                            ) -> tuple[float, dict[str, dict[str, float]]]:
    """The synthetic weight, chosen on validation rows no candidate trained on.

    One model per candidate weight; each is scored by average precision on the validation
    split of the real series (ASD and NAB) and of the synthetic fleet. Among the candidates
    whose synthetic score is within :attr:`TrainingConfig.synthetic_tolerance` of the best
    synthetic score, the one with the best *real* score wins (ties: the smaller weight).

    Returns:
        The weight, and every candidate's two validation scores.
    """
    if config.synthetic_weight is not None:
        return config.synthetic_weight, {}
    valid = dataset.split == SPLITS.index("valid")
    real_valid = valid & (dataset.source != "synthetic")
    synthetic_valid = valid & (dataset.source == "synthetic")
    real_labels = dataset.labels[real_valid]
    if real_labels.size == 0 or real_labels.min() == real_labels.max():
        return 1.0, {}
    table: dict[str, dict[str, float]] = {}
    for weight in config.synthetic_weights:
        booster, _ = fit(dataset, config, weight)
        scores = {}
        for name, rows in (("real", real_valid), ("synthetic", synthetic_valid)):
            labels = dataset.labels[rows]
            if labels.size and labels.min() != labels.max():
                raw = booster.predict(dataset.features[rows],
                                      num_iteration=booster.best_iteration)
                scores[name] = round(float(average_precision_score(labels, raw)), 4)
        table[f"{weight:g}"] = scores
        log.info("synthetic weight %g: validation average precision %s", weight, scores)
    best_synthetic = max((t.get("synthetic", 0.0) for t in table.values()), default=0.0)
    qualified = [w for w in config.synthetic_weights
                 if table[f"{w:g}"].get("synthetic", 0.0)
                 >= best_synthetic - config.synthetic_tolerance]
    best = max(qualified, key=lambda w: (table[f"{w:g}"].get("real", 0.0), -w))
    return best, table


def write_model(model_path: Path, booster: lgb.Booster, calibration: Calibration,
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
        "baseline_config": BaselineConfig().to_dict(),
        "horizon_s": horizon_s,
        "best_iteration": booster.best_iteration,
        "calibration": calibration.to_dict(),
        "data": data,
        **sections,
        "versions": {"lightgbm": lgb.__version__, "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__},
    }
    metadata_path_for(model_path).write_text(json.dumps(metadata, indent=1) + "\n")
    return metadata


def train(config: TrainingConfig, model_path: Path = DEFAULT_MODEL_PATH, *,
          dataset: Dataset | None = None, digests: dict[str, str] | None = None,
          series_count: int | None = None) -> TrainingResult:
    """Build the data, choose the synthetic weight, train, calibrate, evaluate, write.

    Args:
        config: what to train on and how.
        model_path: where the model goes (metadata beside it).
        dataset: rows already built (an evaluation that trains many folds builds features
            once); ``None`` builds them from ``config``.
        digests: data file digests for the metadata, with ``dataset``.
        series_count: number of series behind ``dataset``, for the metadata.
    """
    if dataset is None:
        series, digests = training_series(config)
        dataset = build_dataset(series, config.horizon_s)
        series_count = len(series)
    synthetic_weight, weight_table = choose_synthetic_weight(dataset, config)
    booster, calibration = fit(dataset, config, synthetic_weight)
    evaluation: dict[str, Any] = {}
    for name in SPLITS:
        mask = dataset.split == SPLITS.index(name)
        raw = np.asarray(booster.predict(dataset.features[mask],
                                         num_iteration=booster.best_iteration), dtype=np.float64)
        evaluation[name] = {
            "raw": _metrics(dataset.labels[mask], raw),
            "calibrated": _metrics(dataset.labels[mask], calibration.apply(raw)),
        }
        for source in ("synthetic", "nab", "asd"):
            part = mask & (dataset.source == source)
            if part.any() and name == "test":
                raw_part = np.asarray(booster.predict(
                    dataset.features[part], num_iteration=booster.best_iteration),
                    dtype=np.float64)
                evaluation[f"test_{source}"] = _metrics(dataset.labels[part],
                                                        calibration.apply(raw_part))
    data = {
        "sha256": dataset.digest(),
        "rows": int(dataset.labels.size),
        "positives": int(dataset.labels.sum()),
        "series": series_count,
        "fleet": config.fleet.to_dict(),
        "files": digests or {},
    }
    training = {k: v for k, v in asdict(config).items() if k != "fleet"}
    training["synthetic_weight_chosen"] = synthetic_weight
    training["synthetic_weight_validation_ap"] = weight_table
    metadata = write_model(model_path, booster, calibration, config.horizon_s, data, {
        "training": training,
        "evaluation": evaluation,
    })
    metadata_path = metadata_path_for(model_path)
    return TrainingResult(model_path, metadata_path, metadata)


def main(argv: Sequence[str] | None = None) -> int:
    """``make model``: train the default model into ``models/artifacts``."""
    parser = argparse.ArgumentParser(prog="python -m models.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--instances", type=int, default=TRAINING_FLEET.instances)
    parser.add_argument("--days", type=float, default=TRAINING_FLEET.days)
    parser.add_argument("--seed", type=int, default=TRAINING_FLEET.seed)
    parser.add_argument("--no-nab", action="store_true", help="leave the NAB series out")
    parser.add_argument("--no-asd", action="store_true", help="leave the ASD servers out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fleet = replace(TRAINING_FLEET, instances=args.instances, days=args.days, seed=args.seed)
    result = train(TrainingConfig(fleet=fleet, use_nab=not args.no_nab,
                                  use_asd=not args.no_asd), args.output)
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
