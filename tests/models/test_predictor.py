"""Training writes a model the predictor loads; corrupt or mismatched files are refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.features import FEATURE_NAMES
from models.predictor import DEFAULT_MODEL_PATH, ModelError, Predictor, metadata_path_for
from models.synthetic import FleetConfig
from models.training import TrainingConfig, train

TINY = TrainingConfig(
    fleet=replace(FleetConfig(), instances=16, days=2.0, incidents_per_day=1.0, seed=3),
    use_nab=False, use_asd=False, max_rounds=15, early_stopping_rounds=5, min_child_samples=20,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained in a few seconds on a tiny synthetic fleet."""
    path = tmp_path_factory.mktemp("model") / "tiny.txt"
    train(TINY, path)
    return path


def _copy(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / model.name
    shutil.copy(model, target)
    shutil.copy(metadata_path_for(model), metadata_path_for(target))
    return target


def test_training_writes_a_calibrated_model_with_metadata(tiny_model: Path) -> None:
    """Metadata names features, horizon, data hash and metrics; probabilities lie in 0..1."""
    metadata = json.loads(metadata_path_for(tiny_model).read_text())
    assert metadata["feature_names"] == list(FEATURE_NAMES)
    assert metadata["horizon_s"] == TINY.horizon_s
    assert len(metadata["data"]["sha256"]) == 64
    assert "roc_auc" in metadata["evaluation"]["test"]["calibrated"]
    predictor = Predictor.load(tiny_model)
    features = np.random.default_rng(0).normal(size=(50, len(FEATURE_NAMES))).astype(np.float32)
    probability = predictor.predict(features)
    assert probability.shape == (50,) and ((probability >= 0) & (probability <= 1)).all()


def test_training_is_reproducible(tiny_model: Path, tmp_path: Path) -> None:
    """The same config gives a byte-identical model file."""
    again = train(TINY, tmp_path / "again.txt")
    assert again.model_path.read_bytes() == tiny_model.read_bytes()


def test_shipped_default_model_loads() -> None:
    """The model under models/artifacts fits this code and stays small."""
    predictor = Predictor.load(DEFAULT_MODEL_PATH)
    assert DEFAULT_MODEL_PATH.stat().st_size < 2_000_000
    assert predictor.horizon_s > 0


def test_corrupt_model_file_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    """A truncated model file no longer matches its metadata digest."""
    path = _copy(tiny_model, tmp_path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelError, match="corrupt"):
        Predictor.load(path)


def test_garbage_with_matching_digest_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    """Even with a matching digest, bytes LightGBM cannot parse are refused."""
    import hashlib

    path = _copy(tiny_model, tmp_path)
    path.write_bytes(b"\x00\xffnot a model")
    metadata = json.loads(metadata_path_for(path).read_text())
    metadata["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    metadata_path_for(path).write_text(json.dumps(metadata))
    with pytest.raises(ModelError):
        Predictor.load(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(feature_names=m["feature_names"][::-1]), "other features"),
        (lambda m: m.update(feature_config={**m["feature_config"], "long_window_s": 1.0}),
         "windows"),
        (lambda m: m.update(format_version=99), "format"),
        (lambda m: m.pop("horizon_s"), "lacks horizon_s"),
        (lambda m: m.update(calibration={"raw": [1, 0], "calibrated": [0, 1]}), "calibration"),
    ],
)
def test_mismatched_metadata_is_refused(tiny_model: Path, tmp_path: Path, edit: object,
                                        message: str) -> None:
    """Metadata for other features, windows or layout is refused with a clear message."""
    path = _copy(tiny_model, tmp_path)
    metadata = json.loads(metadata_path_for(path).read_text())
    edit(metadata)  # type: ignore[operator]
    metadata_path_for(path).write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=message):
        Predictor.load(path)


def test_missing_or_unreadable_files_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    """No model file, no metadata, or metadata that is not JSON: all ModelError."""
    with pytest.raises(ModelError, match="cannot read model file"):
        Predictor.load(tmp_path / "absent.txt")
    path = _copy(tiny_model, tmp_path)
    metadata_path_for(path).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        Predictor.load(path)
    metadata_path_for(path).unlink()
    with pytest.raises(ModelError, match="cannot read model metadata"):
        Predictor.load(path)
