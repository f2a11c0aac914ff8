"""Per-instance baselines: learned online, causal, the same through the fleet's bank and
a series, and they notice what breaks an instance's own normal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.baselines import (
    BASELINE_FEATURES,
    BaselineBank,
    BaselineConfig,
    series_baseline_features,
)

SEASONAL_MAX = BASELINE_FEATURES.index("seasonal_z_max_abs")
NOVELTY = BASELINE_FEATURES.index("novelty_spe")
HISTORY = BASELINE_FEATURES.index("history_h")


def _daily(days: float = 4.0, columns: int = 6, seed: int = 0
           ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Columns that follow one daily cycle (so they are correlated) plus a little noise."""
    rng = np.random.default_rng(seed)
    rows = int(days * 288)
    times = 1.7e9 + np.arange(rows) * 300.0
    cycle = np.sin(2 * np.pi * times / 86400.0)
    values = {f"other:c{i}": 10 + (i + 1) * cycle + rng.normal(0, 0.1, rows)
              for i in range(columns)}
    return times, values


def test_seasonal_baseline_learns_the_daily_cycle() -> None:
    """After a few days the daily swing is expected: seasonal z stays small where a plain
    z against the overall mean would be large; a jump to the wrong level is flagged."""
    times, values = _daily(days=4)
    values["other:c0"][-1] = 10 - 1 * np.sin(2 * np.pi * times[-1] / 86400.0)  # mirrored
    features = series_baseline_features([(times, values)])[0]
    assert np.nanmedian(features[-200:-1, SEASONAL_MAX]) < 4.0
    global_max = BASELINE_FEATURES.index("global_z_max_abs")
    assert np.nanmedian(features[-200:-1, global_max]) > np.nanmedian(
        features[-200:-1, SEASONAL_MAX])
    assert features[-1, SEASONAL_MAX] > 3 * np.nanmedian(features[-200:-1, SEASONAL_MAX])


def test_novelty_rises_when_a_correlation_breaks() -> None:
    """Columns that always moved together: one moving against the others is novel even when
    each value alone is within its usual range."""
    times, values = _daily(days=3)
    broken = {k: v.copy() for k, v in values.items()}
    broken["other:c5"][-12:] = 10 - 6 * np.sin(2 * np.pi * times[-12:] / 86400.0)
    normal = series_baseline_features([(times, values)])[0]
    novel = series_baseline_features([(times, broken)])[0]
    assert np.isfinite(normal[-1, NOVELTY])
    assert novel[-1, NOVELTY] > normal[-1, NOVELTY] + 2.0


def test_features_score_the_sample_before_learning_it() -> None:
    """A series' prefix gets exactly the prefix of the features (causal, from the first row)."""
    times, values = _daily(days=2)
    whole = series_baseline_features([(times, values)])[0]
    cut = 400
    prefix = series_baseline_features([(times[:cut], {k: v[:cut] for k, v in values.items()})])[0]
    np.testing.assert_array_equal(prefix, whole[:cut])
    assert whole[0, HISTORY] == 0 and abs(whole[-1, HISTORY] - (times[-1] - times[0]) / 3600) < 1e-3


def test_bank_windows_give_the_series_features() -> None:
    """A fleet watcher sending overlapping windows gets the features a series scorer
    computes for the newest row; a window seen twice gives the same answer."""
    times, values = _daily(days=2, columns=4)
    expected = series_baseline_features([(times, values)])[0]
    bank = BaselineBank()
    width = 36
    got = []
    for end in range(width, times.size + 1, 7):  # windows every 7 samples, overlapping
        start = end - width
        window = bank.features(["a"], times[None, start:end],
                               {k: v[None, start:end] for k, v in values.items()})
        got.append((end - 1, window[0]))
    end = got[-1][0] + 1
    again = bank.features(["a"], times[None, end - width:end],
                          {k: v[None, end - width:end] for k, v in values.items()})
    for row, features in got:
        np.testing.assert_allclose(features, expected[row], rtol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(again[0], got[-1][1])


def test_instances_learn_independently_and_columns_may_appear() -> None:
    """Two instances in one batch keep separate state; a new column joins later."""
    times, values = _daily(days=1, columns=3)
    bank = BaselineBank()
    both = bank.features(["a", "b"], np.stack([times, times]),
                         {k: np.stack([v, v * 100]) for k, v in values.items()})
    assert both.shape == (2, len(BASELINE_FEATURES))
    more = dict(values)
    more["other:new"] = values["other:c0"] * 2
    later = times + times.size * 300.0
    bank.features(["a"], later[None, :], {k: v[None, :] for k, v in more.items()})
    assert "other:new" in bank.columns and set(bank.instances) == {"a", "b"}


def test_bank_survives_save_and_load(tmp_path: Path) -> None:
    """A saved bank resumes exactly where it stopped."""
    times, values = _daily(days=2, columns=3)
    half = times.size // 2
    first = {k: v[None, :half] for k, v in values.items()}
    second = {k: v[None, half:] for k, v in values.items()}
    bank = BaselineBank()
    bank.features(["a"], times[None, :half], first)
    bank.save(tmp_path / "bank.npz")
    resumed = BaselineBank.load(tmp_path / "bank.npz")
    np.testing.assert_array_equal(
        resumed.features(["a"], times[None, half:], second),
        bank.features(["a"], times[None, half:], second))


def test_config_memory_changes_what_is_learned() -> None:
    """A shorter memory follows a lasting level shift sooner: what the bank calls normal
    for the hour moves further towards the new level (the memories are real knobs)."""
    times, values = _daily(days=6, columns=3)
    for v in values.values():
        v[times.size // 2:] += 5.0
    expected = {}
    for name, config in (("slow", BaselineConfig()),
                         ("fast", BaselineConfig(daily_memory_samples=12.0))):
        bank = BaselineBank(config)
        bank.features(["a"], times[None, :], {k: v[None, :] for k, v in values.items()})
        expected[name] = bank.expected("a", times[-1])["other:c0"]
    level = 15 + np.sin(2 * np.pi * times[-1] / 86400.0)
    assert abs(expected["fast"] - level) < abs(expected["slow"] - level)
