"""The fleet watcher's scorer: a batch of windows, each with its own policy and profile."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from activities.scoring import (
    FleetScorer,
    MetricWindow,
    ScoreError,
    ScoreInstancesInput,
    ScoreInstancesResult,
)
from contracts.policy import FleetBudget, Policy
from models.predictor import DEFAULT_MODEL_PATH, Predictor, metadata_path_for


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """The shipped default model, loaded once."""
    return Predictor.load(DEFAULT_MODEL_PATH)


def _window(instance_id: str, memory_end: float, samples: int = 37) -> MetricWindow:
    rng = np.random.default_rng(abs(hash(instance_id)) % 1000)
    memory = np.linspace(40, memory_end, samples)
    return MetricWindow(
        instance_id=instance_id,
        timestamps=[1.7e9 + i * 300.0 for i in range(samples)],
        values={"memory_percent": [float(x) for x in memory],
                "cpu_percent": [float(x) for x in 30 + rng.normal(0, 2, samples)]},
    )


def test_scores_a_batch_in_order(predictor: Predictor) -> None:
    """One verdict per window, in input order, with probabilities in 0..1."""
    windows = [_window("flat", 41), _window("leak", 97)]
    result: ScoreInstancesResult = FleetScorer(predictor).score(
        ScoreInstancesInput(windows, now=1.7e9 + 36 * 300))
    assert [s.instance_id for s in result.scores] == ["flat", "leak"]
    flat, leak = result.scores
    assert 0 <= flat.failure_probability <= 1 and 0 <= leak.failure_probability <= 1
    assert leak.readiness_score > flat.readiness_score
    assert result.model_sha256 == predictor.model_sha256


def test_garbage_values_are_counted_and_empty_windows_hold(predictor: Predictor) -> None:
    """NaN, negative, absurd and None values are ignored and counted; no data = hold."""
    bad = MetricWindow("bad", [1.0, 2.0, 3.0, 4.0],
                       {"cpu_percent": [float("nan"), -3.0, 1e12, None]})
    empty = MetricWindow("empty", [], {})
    result = FleetScorer(predictor).score(ScoreInstancesInput([bad, empty], now=10.0))
    assert result.ignored == {"missing": 1, "nan": 1, "negative": 1, "absurd": 1}
    assert result.scores[0].ignored_values == 4
    assert all(s.decision == "hold" and np.isnan(s.readiness_score) for s in result.scores)


def test_policy_state_round_trips(predictor: Predictor) -> None:
    """With a threshold of 0 and one reading needed, the first call migrates and takes the
    budget's only slot; the next holds because that migration is still in flight."""
    scorer = FleetScorer(predictor)
    policy = Policy(threshold=0.0, consecutive_readings=1)
    window = dataclasses.replace(_window("a", 50), policy=policy)
    budget = FleetBudget(max_concurrent=1)
    first = scorer.score(ScoreInstancesInput([window], 1.0, budget))
    assert first.scores[0].decision == "migrate" and first.scores[0].act
    assert set(first.policy_state.in_flight) == {"a"}
    second = scorer.score(ScoreInstancesInput([window], 2.0, budget, first.policy_state))
    assert second.scores[0].decision == "hold"
    assert "already in flight" in second.scores[0].reason


def test_each_window_has_its_own_policy_and_profile(predictor: Predictor) -> None:
    """One batch, two policies and two profiles: each window is scored by its own profile,
    decided by its own threshold, and advisory ones never act."""
    scorer = FleetScorer(predictor)
    low = dataclasses.replace(_window("low", 97), policy=Policy(threshold=0.0,
                                                                consecutive_readings=1))
    spec = dataclasses.replace(_window("spec", 97), policy=Policy(
        threshold=0.0, consecutive_readings=1, profile="spec", advisory=True))
    result = scorer.score(ScoreInstancesInput([low, spec], 1.7e9 + 36 * 300,
                                              FleetBudget(max_concurrent=5)))
    by_id = {s.instance_id: s for s in result.scores}
    assert by_id["low"].decision == by_id["spec"].decision == "migrate"
    assert by_id["low"].act and not by_id["spec"].act
    assert by_id["low"].readiness_score != by_id["spec"].readiness_score
    single = scorer.score(ScoreInstancesInput([spec], 1.7e9 + 36 * 300))
    assert single.scores[0].readiness_score == pytest.approx(by_id["spec"].readiness_score)


def test_reload_keeps_the_previous_model_when_the_new_one_is_corrupt(
    predictor: Predictor, tmp_path: Path
) -> None:
    """A corrupt file is refused and scoring continues with the model already loaded."""
    activities = FleetScorer(predictor)
    broken = tmp_path / "broken.txt"
    shutil.copy(DEFAULT_MODEL_PATH, broken)
    shutil.copy(metadata_path_for(DEFAULT_MODEL_PATH), metadata_path_for(broken))
    broken.write_text(broken.read_text()[:1000])
    assert activities.reload(broken) is False
    assert activities.predictor is predictor
    assert activities.reload() is True  # the original file still loads
    assert activities.predictor.model_sha256 == predictor.model_sha256


def test_unknown_metric_or_profile_is_refused(predictor: Predictor) -> None:
    """A window with an unknown metric name, or an unknown profile, is refused by name."""
    scorer = FleetScorer(predictor)
    with pytest.raises(ScoreError, match="temperature"):
        scorer.score(ScoreInstancesInput([MetricWindow("x", [1.0], {"temperature": [20.0]})],
                                         1.0))
    odd = dataclasses.replace(_window("y", 50), policy=Policy(profile="odd"))
    with pytest.raises(ScoreError, match="'odd'"):
        scorer.score(ScoreInstancesInput([odd], 1.0))
