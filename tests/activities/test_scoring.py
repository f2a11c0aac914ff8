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


def _asd_like(instance_id: str, samples: int, start: float = 1.7e9,
              columns: int = 19) -> MetricWindow:
    """Nineteen unnamed metrics sharing a daily load, as an ASD server reports them."""
    rng = np.random.default_rng(7)
    times = start + np.arange(samples) * 300.0
    load = 0.5 + 0.3 * np.sin(2 * np.pi * np.arange(samples) / 288)
    values = {f"other:m{i + 1:02d}": [float(x) for x in load * (1 + 0.1 * i)
                                       + rng.normal(0, 0.02, samples)]
              for i in range(columns)}
    return MetricWindow(instance_id, times.tolist(), values)


def _tail(window: MetricWindow, end: int, width: int = 37) -> MetricWindow:
    begin = max(0, end - width)
    return dataclasses.replace(window, timestamps=window.timestamps[begin:end],
                               values={k: v[begin:end] for k, v in window.values.items()})


def test_unnamed_column_keys_are_scored_and_malformed_ones_refused(
        predictor: Predictor) -> None:
    """Nineteen ``other:mNN`` columns score like any window; a key with an empty label or an
    unknown kind is refused by name."""
    scorer = FleetScorer(predictor)
    window = _tail(_asd_like("asd", 37), 37)
    result = scorer.score(ScoreInstancesInput([window], window.timestamps[-1]))
    assert 0 <= result.scores[0].failure_probability <= 1
    for key in ("other:", "gpu:m01"):
        bad = MetricWindow("x", [1.0], {key: [1.0]})
        with pytest.raises(ScoreError, match=repr(key)):
            scorer.score(ScoreInstancesInput([bad], 1.0))


def test_baselines_learn_online_and_survive_a_restart(predictor: Predictor,
                                                     tmp_path: Path) -> None:
    """Fed two days of one instance a sample at a time, the scorer's baselines know it: the
    same final window scores differently than on a scorer that never saw the instance. Saved
    and loaded again (a worker restart), they give that same score."""
    series = _asd_like("db-1", 2 * 288)
    path = tmp_path / "baselines.npz"
    warm = FleetScorer(predictor, baselines_path=path)
    for end in range(1, len(series.timestamps) + 1):
        warm.score(ScoreInstancesInput([_tail(series, end)], series.timestamps[end - 1]))
    last = ScoreInstancesInput([_tail(series, len(series.timestamps))], series.timestamps[-1])
    learned = warm.score(last).scores[0].failure_probability
    cold = FleetScorer(predictor).score(last).scores[0].failure_probability
    assert warm.baselines.instances == 1
    assert learned != pytest.approx(cold, abs=1e-9)
    warm.baselines.save()
    restarted = FleetScorer(predictor, baselines_path=path)
    assert restarted.baselines.instances == 1
    assert restarted.score(last).scores[0].failure_probability == pytest.approx(learned)


def test_a_model_with_other_memories_starts_fresh_baselines(predictor: Predictor,
                                                            tmp_path: Path) -> None:
    """Switching to a model whose baselines learn with other memories empties the bank (and
    the saved file); a model with the same memories keeps what was learned."""
    path = tmp_path / "baselines.npz"
    scorer = FleetScorer(predictor, baselines_path=path)
    window = _tail(_asd_like("db-1", 40), 40)
    scorer.score(ScoreInstancesInput([window], window.timestamps[-1]))
    scorer.baselines.follow(predictor.baseline_config)
    assert scorer.baselines.instances == 1
    other = dataclasses.replace(predictor.baseline_config,
                                daily_memory_samples=predictor.baseline_config
                                .daily_memory_samples * 2)
    scorer.baselines.follow(other)
    assert scorer.baselines.instances == 0 and scorer.baselines.config == other
    assert FleetScorer(predictor, baselines_path=path).baselines.instances == 0


def test_an_unreadable_baselines_file_starts_fresh(predictor: Predictor,
                                                  tmp_path: Path) -> None:
    """A damaged file in the state dir does not stop the worker: it scores with new
    baselines."""
    path = tmp_path / "baselines.npz"
    path.write_bytes(b"not a bank")
    scorer = FleetScorer(predictor, baselines_path=path)
    window = _tail(_asd_like("db-1", 37), 37)
    assert scorer.score(ScoreInstancesInput([window], window.timestamps[-1])).scores
    assert scorer.baselines.instances == 1


def test_the_forecast_is_in_the_reason(predictor: Predictor) -> None:
    """A disk filling half a percent every 5 minutes from 70 %: the verdict names it and the
    decision's sentence ends with it; a flat disk has no forecast."""
    times = [1.7e9 + i * 300.0 for i in range(37)]
    filling = MetricWindow("full", times, {"disk_used_percent": [70 + 0.5 * i
                                                                 for i in range(37)]})
    flat = MetricWindow("flat", times, {"disk_used_percent": [70.0] * 37})
    result = FleetScorer(predictor).score(ScoreInstancesInput([filling, flat], times[-1]))
    verdict, calm = result.scores
    assert verdict.forecast is not None and verdict.forecast.startswith("disk full in ")
    assert verdict.reason.endswith(f"Forecast: {verdict.forecast}.")
    assert calm.forecast is None and "Forecast" not in calm.reason


@pytest.mark.parametrize(("profile", "weight"), [("default", 10.0), ("spec", 15.0)])
def test_the_history_term_moves_both_profiles(predictor: Predictor, profile: str,
                                              weight: float) -> None:
    """The same window with a failure history of 0.5 scores half the profile's history
    weight higher than with none."""
    base = dataclasses.replace(_window("h", 60), policy=Policy(profile=profile))
    scorer = FleetScorer(predictor)
    none = scorer.score(ScoreInstancesInput([base], 1.7e9 + 36 * 300)).scores[0]
    some = scorer.score(ScoreInstancesInput(
        [dataclasses.replace(base, historical_failure_rate=0.5)], 1.7e9 + 36 * 300)).scores[0]
    assert some.readiness_score - none.readiness_score == pytest.approx(weight / 2)
