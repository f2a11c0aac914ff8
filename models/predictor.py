"""Load a trained failure model and turn feature rows into calibrated probabilities.

A model is two files: the LightGBM text model and a metadata JSON beside it (same stem,
``.json``) holding the feature list, the feature windows, the horizon, the isotonic
calibration map, the SHA-256 of the model file, the data hash and the evaluation metrics.
:meth:`Predictor.load` refuses any pair that does not fit this code — a truncated or edited
model file, metadata of another model, a different feature list — with a :class:`ModelError`
that says what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from models.baselines import BaselineConfig
from models.features import FEATURE_NAMES, FeatureConfig, Float32Array
from models.metrics import FloatArray

FORMAT_VERSION = 2
"""Version of the metadata layout this code reads and writes."""

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
"""Where the shipped model lives."""

DEFAULT_MODEL_PATH = ARTIFACTS_DIR / "pae-default.txt"
"""The trained default model (metadata: same stem, ``.json``)."""

_REQUIRED = ("format_version", "model_sha256", "feature_names", "feature_config",
             "baseline_config", "horizon_s", "calibration")


class ModelError(Exception):
    """A model file or its metadata is missing, corrupt, or does not fit this code."""


def metadata_path_for(model_path: Path) -> Path:
    """The metadata file that belongs to ``model_path``."""
    return model_path.with_suffix(".json")


@dataclass(frozen=True)
class Calibration:
    """Monotone piecewise-linear map from raw LightGBM probability to calibrated probability
    (see :func:`fit_calibration`)."""

    raw: FloatArray
    """Increasing raw probabilities (the map's knots)."""
    calibrated: FloatArray
    """Calibrated probability at each knot."""

    def apply(self, raw: FloatArray) -> FloatArray:
        """Linear interpolation between the knots, constant beyond them."""
        return np.interp(raw, self.raw, self.calibrated)

    def to_dict(self) -> dict[str, Any]:
        """The metadata form."""
        return {"method": "centered-isotonic", "raw": [float(x) for x in self.raw],
                "calibrated": [float(y) for y in self.calibrated]}


def fit_calibration(raw: FloatArray, labels: FloatArray,
                    weights: FloatArray | None = None) -> Calibration:
    """Centered isotonic regression (Oron and Flournoy, 2017) of ``labels`` on ``raw``.

    Plain isotonic regression is a step function: every row inside a block gets the same
    probability, so at the top of the ranking, where the migration threshold sits, hundreds
    of rows tie and a threshold can only take a few useful values. Centering puts one knot at
    the weighted mean raw score of each isotonic block and interpolates between them, which
    keeps the calibration (block means are unchanged) but makes the map strictly increasing;
    above the last knot the last slope continues up to a probability of 1.
    """
    from sklearn.isotonic import IsotonicRegression

    raw = np.asarray(raw, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    weights = np.ones_like(raw) if weights is None else np.asarray(weights, dtype=np.float64)
    if raw.size == 0 or labels.min(initial=0.0) == labels.max(initial=0.0):
        level = float(labels.mean()) if labels.size else 0.0
        return Calibration(np.array([0.0, 1.0]), np.array([level, level]))
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    fitted = isotonic.fit(raw, labels, sample_weight=weights).predict(raw)
    levels, block = np.unique(fitted, return_inverse=True)
    mass = np.bincount(block, weights=weights)
    centres = np.bincount(block, weights=weights * raw) / np.maximum(mass, 1e-300)
    knots_x, knots_y = [0.0], [float(levels[0])]
    for x, y in zip(centres.tolist(), levels.tolist(), strict=True):
        if x > knots_x[-1]:
            knots_x.append(x)
            knots_y.append(y)
    if len(knots_x) >= 3 and knots_x[-1] < 1.0:
        slope = (knots_y[-1] - knots_y[-2]) / (knots_x[-1] - knots_x[-2])
        knots_x.append(1.0)
        knots_y.append(min(1.0, knots_y[-1] + slope * (1.0 - knots_x[-2])))
    elif knots_x[-1] < 1.0:
        knots_x.append(1.0)
        knots_y.append(knots_y[-1])
    return Calibration(np.asarray(knots_x), np.asarray(knots_y))


class Predictor:
    """A loaded model: feature matrix in, calibrated failure probabilities out."""

    def __init__(self, booster: lgb.Booster, metadata: dict[str, Any], source: Path) -> None:
        self._booster = booster
        self.metadata = metadata
        """Everything in the metadata file."""
        self.source = source
        """The model file it was loaded from."""
        self.horizon_s = float(metadata["horizon_s"])
        """The model predicts failure or degradation within this many seconds."""
        self.feature_config = FeatureConfig(**metadata["feature_config"])
        """Windows the features must be computed with."""
        self.baseline_config = BaselineConfig(**metadata["baseline_config"])
        """Memories the per-instance baselines must be learned with."""
        self.model_sha256 = str(metadata["model_sha256"])
        """Identity of the model file."""
        calibration = metadata["calibration"]
        self.calibration = Calibration(
            np.asarray(calibration["raw"], dtype=np.float64),
            np.asarray(calibration["calibrated"], dtype=np.float64),
        )

    @classmethod
    def load(cls, model_path: Path = DEFAULT_MODEL_PATH,
             metadata_path: Path | None = None) -> Predictor:
        """Load and check a model and its metadata.

        Raises:
            ModelError: a file is missing or unreadable, the model file's digest differs from
                the metadata's, or the model was built for other features or windows.
        """
        model_path = Path(model_path)
        metadata_path = Path(metadata_path) if metadata_path else metadata_path_for(model_path)
        try:
            model_bytes = model_path.read_bytes()
        except OSError as err:
            raise ModelError(f"cannot read model file {model_path}: {err.strerror}") from err
        try:
            metadata = json.loads(metadata_path.read_text())
        except OSError as err:
            raise ModelError(f"cannot read model metadata {metadata_path}: {err.strerror}") from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelError(f"model metadata {metadata_path} is not valid JSON: {err}") from err
        check_metadata(metadata, metadata_path)
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != metadata["model_sha256"]:
            raise ModelError(
                f"model file {model_path} does not match its metadata {metadata_path.name} "
                f"(sha256 {digest[:12]} != {metadata['model_sha256'][:12]}): the file is corrupt "
                "or belongs to another model; retrain with `make model` or restore both files"
            )
        try:
            booster = lgb.Booster(model_str=model_bytes.decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as err:
            raise ModelError(f"LightGBM cannot load {model_path}: {err}") from err
        if booster.num_feature() != len(FEATURE_NAMES):
            raise ModelError(
                f"model {model_path} expects {booster.num_feature()} features, this code "
                f"computes {len(FEATURE_NAMES)}; retrain with `make model`"
            )
        return cls(booster, metadata, model_path)

    def predict_raw(self, features: Float32Array, *, num_threads: int = 0) -> FloatArray:
        """LightGBM's own probability (trained with class weights, so not calibrated)."""
        if features.shape[0] == 0:
            return np.empty(0)
        raw = self._booster.predict(features, num_threads=num_threads)
        return np.asarray(raw, dtype=np.float64)

    def predict(self, features: Float32Array, *, num_threads: int = 0) -> FloatArray:
        """Calibrated probability of failure or degradation within :attr:`horizon_s`.

        Args:
            features: (rows, len(FEATURE_NAMES)) as built by :mod:`models.features` with
                :attr:`feature_config`.
            num_threads: LightGBM threads; 0 = its default (all cores).
        """
        return self.calibration.apply(self.predict_raw(features, num_threads=num_threads))


def check_metadata(metadata: Any, where: Path) -> None:
    """Raise :class:`ModelError` unless ``metadata`` fits this code's features and layout."""
    if not isinstance(metadata, dict):
        raise ModelError(f"model metadata {where} is not a JSON object")
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise ModelError(f"model metadata {where} lacks {', '.join(missing)}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise ModelError(
            f"model metadata {where} has format {metadata['format_version']!r}, this code reads "
            f"{FORMAT_VERSION}"
        )
    names = list(metadata["feature_names"])
    if names != list(FEATURE_NAMES):
        differing = next(
            (f"{a!r} vs {b!r}" for a, b in zip(names, FEATURE_NAMES, strict=False) if a != b),
            f"{len(names)} vs {len(FEATURE_NAMES)} features",
        )
        raise ModelError(
            f"model {where.stem} was trained on other features ({differing}); retrain with "
            "`make model`"
        )
    if metadata["feature_config"] != FeatureConfig().to_dict():
        raise ModelError(
            f"model {where.stem} was trained with windows {metadata['feature_config']}, this "
            f"code uses {FeatureConfig().to_dict()}; retrain with `make model`"
        )
    if metadata["baseline_config"] != BaselineConfig().to_dict():
        raise ModelError(
            f"model {where.stem} was trained with other baseline memories; retrain with "
            "`make model`"
        )
    calibration = metadata["calibration"]
    try:
        raw = np.asarray(calibration["raw"], dtype=np.float64)
        calibrated = np.asarray(calibration["calibrated"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"model metadata {where} has an unreadable calibration: {err}") from err
    if (raw.ndim != 1 or raw.shape != calibrated.shape or raw.size < 2
            or np.any(np.diff(raw) < 0) or np.any((calibrated < 0) | (calibrated > 1))):
        raise ModelError(f"model metadata {where} has an invalid calibration map")
