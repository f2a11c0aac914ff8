"""Features: strictly causal, robust to gaps, irregular sampling, absent and garbage values."""

from __future__ import annotations

import numpy as np

from models.features import FEATURE_NAMES, series_features, window_features
from models.metrics import METRICS, MetricSample, empty_counts, samples_to_arrays, sanitize


def _series(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    times = 1.7e9 + np.cumsum(rng.uniform(200, 400, rows))  # irregular sampling
    cpu = np.clip(30 + np.cumsum(rng.normal(0, 1, rows)), 0, 100)
    cpu[rng.random(rows) < 0.1] = np.nan
    return times, {"cpu_percent": cpu, "network_bytes": rng.uniform(1e7, 1e8, rows)}


def test_prefix_gives_the_same_rows() -> None:
    """Features of a prefix equal the prefix of the features of the whole series."""
    times, values = _series()
    whole = series_features(times, values, max_samples=48, chunk_rows=100)
    for cut in (1, 37, 250, 599):
        prefix = series_features(times[:cut], {k: v[:cut] for k, v in values.items()},
                                 max_samples=48, chunk_rows=100)
        np.testing.assert_array_equal(prefix, whole[:cut])


def test_future_changes_do_not_leak_into_the_past() -> None:
    """Rewriting the future of a series leaves every earlier row's features unchanged."""
    times, values = _series()
    changed = {k: v.copy() for k, v in values.items()}
    changed["cpu_percent"][300:] = 99.0
    before = series_features(times, values)
    after = series_features(times, changed)
    np.testing.assert_array_equal(before[:300], after[:300])
    assert not np.array_equal(before[300:], after[300:], equal_nan=True)


def test_series_and_window_paths_agree() -> None:
    """The worker's window path gives the CLI's per-row values for the newest row."""
    times, values = _series(rows=200)
    whole = series_features(times, values, max_samples=64)
    window = window_features(times[None, -64:], {k: v[None, -64:] for k, v in values.items()})
    np.testing.assert_allclose(window[0], whole[-1], rtol=1e-5, equal_nan=True)


def test_absent_metrics_and_gaps_give_nan_not_errors() -> None:
    """Absent metrics are NaN features; a gap longer than the long window empties it."""
    times = np.array([0.0, 300, 600, 900, 100_000, 100_300])
    values = {"memory_percent": np.array([50.0, 51, 52, 53, 54, 55])}
    features = series_features(times, values)
    assert features.shape == (6, len(FEATURE_NAMES))
    cpu_columns = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("cpu_percent__")]
    assert np.isnan(features[:, cpu_columns]).all()
    last = FEATURE_NAMES.index("memory_percent__last")
    slope = FEATURE_NAMES.index("memory_percent__slope_long")
    assert features[3, last] == 53
    assert features[3, slope] > 0
    # After the gap only two samples are in the window: still a last value, slope from two.
    assert features[4, last] == 54 and np.isnan(features[4, slope])


def test_time_to_threshold_tracks_a_leak() -> None:
    """A steady memory leak forecasts the hours left until the 95 % threshold."""
    times = np.arange(40) * 300.0
    memory = 50 + np.arange(40) * 1.0  # +12 % per hour
    features = series_features(times, {"memory_percent": memory})
    hours = features[-1, FEATURE_NAMES.index("memory_percent__hours_to_threshold")]
    assert abs(hours - (95 - memory[-1]) / 12) < 0.01


def test_sanitize_ignores_and_counts_garbage() -> None:
    """NaN, infinities, negatives, absurd values and None become NaN and are counted."""
    counts = empty_counts()
    raw = [10.0, None, float("nan"), float("inf"), -5.0, 1e9, 99.0]
    clean = sanitize("cpu_percent", raw, counts)
    assert np.isnan(clean[1:6]).all() and clean[0] == 10 and clean[6] == 99
    assert counts == {"missing": 1, "nan": 2, "negative": 1, "absurd": 1}
    # A metric of unknown meaning may be negative.
    assert sanitize("other", [-5.0])[0] == -5.0


def test_garbage_never_crashes_the_features() -> None:
    """A window of nothing but garbage yields NaN features for that metric, no exception."""
    times = np.arange(10) * 300.0
    garbage = sanitize("cpu_percent", [float("nan"), -1, 1e30, None, float("inf")] * 2)
    features = series_features(times, {"cpu_percent": garbage})
    assert np.isnan(features).all()


def test_samples_become_columns() -> None:
    """MetricSample rows turn into per-metric columns; network in+out are summed."""
    samples = [MetricSample(0.0, "a", cpu_percent=5, network_in_bytes=1, network_out_bytes=2),
               MetricSample(300.0, "a", memory_percent=7)]
    times, columns = samples_to_arrays(samples)
    assert list(times) == [0.0, 300.0]
    assert set(columns) == set(METRICS)
    assert columns["network_bytes"] == [3.0, None]
    assert columns["cpu_percent"] == [5, None] and columns["memory_percent"] == [None, 7]
