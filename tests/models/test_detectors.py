"""The evaluation's policy replay and episode counting (bench/detectors.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.detectors import Episode, migrations, score_alarms, windowed_gaussian
from contracts.policy import Policy
from models.scoring import run_policy


@pytest.mark.parametrize("seed", range(4))
def test_fast_replay_equals_the_policy(seed: int) -> None:
    """On random scores with NaN, the fast replay migrates exactly when run_policy does."""
    rng = np.random.default_rng(seed)
    times = 1.7e9 + np.cumsum(rng.uniform(200, 400, 3000))
    scores = rng.uniform(0, 100, 3000)
    scores[rng.random(3000) < 0.05] = np.nan
    for threshold in (50.0, 80.0, 95.0):
        policy = Policy(threshold=threshold)
        decisions = run_policy(times, scores, policy)
        expected = times[[d.action == "migrate" for d in decisions]]
        np.testing.assert_array_equal(migrations(times, scores, threshold), expected)


def test_counting_early_in_time_late_and_false() -> None:
    """Alarms 1 h before, 10 min after and 1 h after onsets count as early, in time and late;
    one far from every episode is false; alarms outside the region are ignored."""
    hour = 3600.0
    episodes = [Episode(10 * hour, 12 * hour, "a"), Episode(20 * hour, 22 * hour, "b"),
                Episode(30 * hour, 32 * hour, "b"), Episode(40 * hour, 41 * hour, "c")]
    alarms = np.array([9 * hour, 20 * hour + 600, 31 * hour, 50 * hour, 100 * hour])
    result = score_alarms(alarms, episodes, region=(0.0, 60 * hour))
    assert result["caught_before"] == 1 and result["caught_in_time"] == 2
    assert result["caught_late"] == 1 and result["false_alarms"] == 1
    assert result["alarms"] == 4 and sorted(result["lead_min"]) == [-60.0, -10.0, 60.0]
    assert result["kinds"]["b"] == [1, 2, 2] and result["kinds"]["c"] == [0, 0, 1]


def test_windowed_gaussian_sees_a_jump_not_noise() -> None:
    """The baseline's score stays low on noise and jumps on a level shift."""
    rng = np.random.default_rng(0)
    times = np.arange(600) * 300.0
    values = {"other": rng.normal(10, 1, 600)}
    values["other"][500] = 30
    score = windowed_gaussian(times, values)
    assert score[500] > 10 and np.median(score[100:500]) < 2
