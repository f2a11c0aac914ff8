"""The relative probability: a condition that lasts stops reading as news, a new one and a
near-certain one still read high, and the fleet's bank and a series agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.baselines import BaselineBank
from models.relative import (
    RELATIVE_HALF_LIFE_S,
    learn_level,
    relative_probability,
    series_usual_levels,
)


def _series(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five-minute readings of a quiet instance, a few missing, one duplicate timestamp."""
    rng = np.random.default_rng(seed)
    times = 1.7e9 + np.arange(rows) * 300.0
    times[100] = times[99]
    probability = 0.02 + 0.01 * rng.random(rows)
    probability[rng.random(rows) < 0.03] = np.nan
    return times, probability


def test_a_lasting_level_stops_counting_and_a_new_rise_counts() -> None:
    """A probability that sits at 0.3 for a day reads near 0 at its end; the same 0.3 after
    quiet hours reads near 0.3."""
    times = 1.7e9 + np.arange(600) * 300.0
    probability = np.full(600, 0.02)
    probability[200:488] = 0.3
    relative = relative_probability(probability, series_usual_levels(times, probability))
    assert relative[200] > 0.27
    assert relative[487] < 0.02
    probability[560] = 0.3
    again = relative_probability(probability, series_usual_levels(times, probability))
    assert again[560] > 0.2


def test_near_certainty_stays_near_the_top_whatever_the_level() -> None:
    """The rescaling keeps the top of the scale: 0.99 over a level of 0.5 is still 0.98."""
    assert relative_probability(np.array([0.99]), np.array([0.5]))[0] > 0.97
    assert relative_probability(np.array([0.4]), np.array([np.nan]))[0] == 0.4
    assert np.isnan(relative_probability(np.array([np.nan]), np.array([0.1]))[0])


def test_the_level_is_causal_and_starts_from_zero() -> None:
    """A row's level depends only on earlier rows, and the first readings of a new instance
    barely move it (a new instance that is already failing is judged by its probability)."""
    times, probability = _series()
    levels = series_usual_levels(times, probability)
    changed = probability.copy()
    changed[300:] = 0.9
    np.testing.assert_array_equal(series_usual_levels(times, changed)[:301], levels[:301])
    start = series_usual_levels(times[:3], np.array([0.9, 0.9, 0.9]))
    assert np.isnan(start[0]) and start[1] < 0.9 * 300.0 / RELATIVE_HALF_LIFE_S


def test_bank_gives_the_series_levels_and_a_window_scored_twice_the_same(
        tmp_path: Path) -> None:
    """The fleet's bank, fed one reading per instance at a time, gives the levels of the
    series path; the same reading again gets the same level; a saved bank resumes."""
    times, probability = _series()
    expected = series_usual_levels(times, probability)
    bank = BaselineBank()
    got = []
    for row in range(times.size):
        at, value = times[row:row + 1], probability[row:row + 1]
        got.append(bank.usual_probability(["a"], at, value)[0])
        if row == 250:
            assert bank.usual_probability(["a"], at, value)[0] == got[-1]
            bank.save(tmp_path / "bank.npz")
            bank = BaselineBank.load(tmp_path / "bank.npz")
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


def test_instances_keep_their_own_levels() -> None:
    """One call learns many instances at once, each from its own readings."""
    level, learned = learn_level(np.array([np.nan, 0.5]), np.array([np.nan, 0.0]),
                                 np.array([0.5, 0.5]), np.array([300.0, 300.0]))
    assert 0.0 < level[0] < 0.05 and level[1] == 0.5
    assert learned.tolist() == [300.0, 300.0]


def test_the_fleet_scores_a_window_as_the_trace_scores_its_row() -> None:
    """score_windows with the worker's bank, fed one overlapping window per sample, gives
    each newest row the readiness score_series gives it: the usual level is learned the same
    way in both paths."""
    from models.predictor import DEFAULT_MODEL_PATH, Predictor
    from models.scoring import score_series, score_windows

    predictor = Predictor.load(DEFAULT_MODEL_PATH)
    rng = np.random.default_rng(3)
    rows, width = 400, 48
    times = 1.7e9 + np.arange(rows) * 300.0
    values = {f"other:m{i}": 0.5 + 0.1 * np.sin(times / 7000.0 + i) + rng.normal(0, 0.02, rows)
              for i in range(5)}
    for column in values.values():
        column[300:] += 0.6  # a lasting shift
    series = score_series(times, values, predictor, max_samples=width)
    bank = BaselineBank()
    fleet = []
    for end in range(1, rows + 1):
        start = max(0, end - width)
        pad = width - (end - start)
        window_times = np.concatenate([np.full(pad, np.nan), times[start:end]])[None, :]
        window = {k: np.concatenate([np.full(pad, np.nan), v[start:end]])[None, :]
                  for k, v in values.items()}
        fleet.append(score_windows(window_times, window, predictor, baselines=bank,
                                   instance_ids=["a"]).readiness_score[0])
    np.testing.assert_allclose(fleet, series.readiness_score, rtol=1e-4, atol=1e-4)
    assert series.relative_probability[-1] < series.failure_probability[-1]
