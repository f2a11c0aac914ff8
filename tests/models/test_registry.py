"""The model registry swaps versions atomically and idempotently, and scoring follows it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from activities.scoring import FleetScorer, MetricWindow, ScoreInstancesInput
from models.predictor import DEFAULT_MODEL_PATH, ModelError, metadata_path_for
from models.registry import ModelRegistry


def _copy_model(folder: Path, corrupt: bool = False, variant: bool = False) -> Path:
    """The shipped model in ``folder``: damaged (digest no longer matches), or a valid
    ``variant`` with other bytes (and its metadata's digest updated to match)."""
    folder.mkdir(parents=True)
    model = folder / "pae.txt"
    shutil.copyfile(DEFAULT_MODEL_PATH, model)
    shutil.copyfile(metadata_path_for(DEFAULT_MODEL_PATH), metadata_path_for(model))
    if corrupt:
        text = model.read_text()
        model.write_text(text.replace("tree", "free", 1))
    if variant:
        model.write_text(model.read_text() + "\n")
        metadata = json.loads(metadata_path_for(model).read_text())
        metadata["model_sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
        metadata_path_for(model).write_text(json.dumps(metadata))
    return model


def test_promotion_is_versioned_idempotent_and_refuses_stale_or_bad(tmp_path: Path) -> None:
    """Each promotion adds one version and repoints; repeating a candidate changes nothing;
    a stale comparison or a corrupt file is refused and leaves the pointer as it was."""
    registry = ModelRegistry(tmp_path / "models")
    assert registry.current().version == 0 and registry.pointer_stamp() is None
    first = registry.promote(_copy_model(tmp_path / "a"), candidate_id="run-a",
                             metric="average_precision", champion_score=0.1,
                             challenger_score=0.2, expected_version=0)
    assert first.version == 1 and Path(first.model_path).is_file()
    assert registry.promote(_copy_model(tmp_path / "a2"), candidate_id="run-a") == first
    stamp = registry.pointer_stamp()
    with pytest.raises(ModelError, match="moved from v0 to v1"):
        registry.promote(_copy_model(tmp_path / "b"), candidate_id="run-b", expected_version=0)
    with pytest.raises(ModelError, match="does not match its metadata"):
        registry.promote(_copy_model(tmp_path / "c", corrupt=True), candidate_id="run-c")
    assert registry.pointer_stamp() == stamp and registry.current() == first
    assert [p.name for p in (registry.root / "versions").iterdir()] == [
        f"run-a-{first.model_sha256[:12]}"]
    second = registry.promote(_copy_model(tmp_path / "d"), candidate_id="sched/run-d:2026")
    assert second.version == 2
    assert Path(second.model_path).parent.name.startswith("sched_run-d_2026-")
    logged = registry.decisions()
    assert [(d["decision"], d["version"]) for d in logged] == [("promoted", 1), ("promoted", 2)]
    assert logged[0]["champion_score"] == 0.1 and logged[0]["challenger_score"] == 0.2


def test_ids_that_differ_only_in_unsafe_characters_keep_their_own_models(
    tmp_path: Path,
) -> None:
    """``a/b`` and ``a_b`` make the same folder-safe label; each pointer still names a file
    holding its own model, and the first version's file is untouched."""
    registry = ModelRegistry(tmp_path / "models")
    first = registry.promote(_copy_model(tmp_path / "a"), candidate_id="sched/a")
    second = registry.promote(_copy_model(tmp_path / "b", variant=True), candidate_id="sched_a")
    assert first.model_sha256 != second.model_sha256
    for pointer in (first, second):
        stored = hashlib.sha256(Path(pointer.model_path).read_bytes()).hexdigest()
        assert stored == pointer.model_sha256


def test_scoring_follows_the_pointer_and_keeps_its_model_on_a_bad_file(tmp_path: Path) -> None:
    """Scoring picks up a promotion at its next batch; a pointer to a damaged file is refused
    and the previous model keeps scoring; a broken current model at start falls back to the
    shipped default."""
    registry = ModelRegistry(tmp_path / "models")
    scoring = FleetScorer.from_registry(registry)
    request = ScoreInstancesInput(
        [MetricWindow("db-1", [1.0e9, 1.0e9 + 300], {"cpu_percent": [50.0, 60.0]})], 1.0e9 + 300)
    assert scoring.score(request).model_version == 0
    promoted = registry.promote(_copy_model(tmp_path / "a"), candidate_id="run-a")
    result = scoring.score(request)
    assert result.model_version == promoted.version == 1
    assert scoring.predictor.source == Path(promoted.model_path)

    damaged = _copy_model(tmp_path / "bad", corrupt=True)
    pointer = json.loads(registry.pointer_path.read_text())
    registry.pointer_path.write_text(json.dumps({**pointer, "version": 2,
                                                 "model_path": str(damaged)}))
    result = scoring.score(request)
    assert result.model_version == 1 and scoring.predictor.source == Path(promoted.model_path)

    restarted = FleetScorer.from_registry(registry)
    assert restarted.model_version == 0 and restarted.predictor.source == DEFAULT_MODEL_PATH


def test_torn_log_line_is_skipped_and_a_lost_log_entry_is_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A torn append (a crash mid-line) costs that line only: later decisions still read and
    the next append starts a line of its own. A crash between the pointer write and the log
    append is repaired when the promotion is repeated: the entry is appended once."""
    registry = ModelRegistry(tmp_path / "models")
    first = registry.promote(_copy_model(tmp_path / "a"), candidate_id="run-a")
    with registry.log_path.open("a") as log_file:
        log_file.write('{"decision": "promo')  # torn: no end, no newline
    second = registry.promote(_copy_model(tmp_path / "b"), candidate_id="run-b")
    assert [d["candidate_id"] for d in registry.decisions()] == ["run-a", "run-b"]
    assert "line 2 is not a JSON object" in caplog.text
    # The crash: the pointer names run-b but its log line never made it.
    lines = registry.log_path.read_text().splitlines()
    registry.log_path.write_text("\n".join(lines[:-1]) + "\n")
    assert [d["candidate_id"] for d in registry.decisions()] == ["run-a"]
    assert registry.promote(_copy_model(tmp_path / "b2"), candidate_id="run-b") == second
    assert registry.promote(_copy_model(tmp_path / "b3"), candidate_id="run-b") == second
    logged = registry.decisions()
    assert [(d["candidate_id"], d["version"], d["from_version"]) for d in logged] == [
        ("run-a", first.version, 0), ("run-b", second.version, 1)]
