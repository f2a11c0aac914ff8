"""Features: strictly causal (multivariate input included), robust to gaps, irregular
sampling, absent and garbage values, and the same size whatever the columns."""

from __future__ import annotations

import numpy as np
import pytest

from models.baselines import BASELINE_FEATURE_NAMES
from models.features import (
    FEATURE_NAMES,
    WINDOW_FEATURE_NAMES,
    series_features,
    window_features,
)
from models.metrics import METRICS, MetricSample, empty_counts, samples_to_arrays, sanitize

WINDOW_COLUMNS = len(WINDOW_FEATURE_NAMES)


def _series(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    times = 1.7e9 + np.cumsum(rng.uniform(200, 400, rows))  # irregular sampling
    cpu = np.clip(30 + np.cumsum(rng.normal(0, 1, rows)), 0, 100)
    cpu[rng.random(rows) < 0.1] = np.nan
    return times, {"cpu_percent": cpu, "network_bytes": rng.uniform(1e7, 1e8, rows)}


def _multivariate(rows: int = 900, columns: int = 19, seed: int = 1
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """ASD-like: many unnamed columns sharing a daily load, plus noise and gaps."""
    rng = np.random.default_rng(seed)
    times = 1.7e9 + np.arange(rows) * 300.0 + rng.uniform(-20, 20, rows)
    load = 0.5 + 0.3 * np.sin(2 * np.pi * np.arange(rows) / 288)
    values = {}
    for i in range(columns):
        series = load * rng.uniform(0.5, 1.5) + rng.normal(0, 0.03, rows)
        series[rng.random(rows) < 0.05] = np.nan
        values[f"other:m{i + 1:02d}"] = series
    values["memory_percent"] = 40 + np.cumsum(rng.normal(0, 0.2, rows))
    return times, values


def test_prefix_gives_the_same_rows() -> None:
    """Features of a prefix equal the prefix of the features of the whole series."""
    times, values = _series()
    whole = series_features(times, values, max_samples=48, chunk_rows=100)
    for cut in (1, 37, 250, 599):
        prefix = series_features(times[:cut], {k: v[:cut] for k, v in values.items()},
                                 max_samples=48, chunk_rows=100)
        np.testing.assert_array_equal(prefix, whole[:cut])


def test_multivariate_prefix_gives_the_same_rows() -> None:
    """With 20 columns (19 unnamed) and the per-instance baselines, a prefix's features are
    the prefix of the whole series' features: nothing looks ahead."""
    times, values = _multivariate()
    whole = series_features(times, values, max_samples=48, chunk_rows=128)
    assert np.isfinite(whole[-1, -len(BASELINE_FEATURE_NAMES):-1]).any()
    for cut in (5, 300, 600):
        prefix = series_features(times[:cut], {k: v[:cut] for k, v in values.items()},
                                 max_samples=48, chunk_rows=128)
        np.testing.assert_array_equal(prefix, whole[:cut])


def test_future_changes_do_not_leak_into_the_past() -> None:
    """Rewriting the future of a multivariate series leaves every earlier row unchanged."""
    times, values = _multivariate()
    changed = {k: v.copy() for k, v in values.items()}
    for key in list(changed)[:10]:
        changed[key][500:] = 5.0
    before = series_features(times, values)
    after = series_features(times, changed)
    np.testing.assert_array_equal(before[:500], after[:500])
    assert not np.array_equal(before[500:], after[500:], equal_nan=True)


def test_series_and_window_paths_agree() -> None:
    """The worker's window path gives the CLI's per-row window features for the newest row."""
    times, values = _series(rows=200)
    whole = series_features(times, values, max_samples=64)
    window = window_features(times[None, -64:], {k: v[None, -64:] for k, v in values.items()})
    np.testing.assert_allclose(window[0, :WINDOW_COLUMNS], whole[-1, :WINDOW_COLUMNS],
                               rtol=1e-5, equal_nan=True)
    assert np.isnan(window[0, WINDOW_COLUMNS:]).all()  # no bank: baselines unknown


def test_any_number_of_columns_gives_the_same_vector() -> None:
    """One, three or nineteen unnamed columns: the same feature list; the summaries do not
    depend on the order the columns come in."""
    times, values = _multivariate(rows=100)
    others = {k: v for k, v in values.items() if k.startswith("other:")}
    for n in (1, 3, 19):
        subset = dict(list(others.items())[:n])
        features = series_features(times, subset, baseline=False)
        assert features.shape == (100, len(FEATURE_NAMES))
    reordered = dict(reversed(list(others.items())))
    np.testing.assert_allclose(series_features(times, others, baseline=False),
                               series_features(times, reordered, baseline=False),
                               rtol=1e-5, atol=1e-6, equal_nan=True)
    count = FEATURE_NAMES.index("columns__columns")
    assert series_features(times, others, baseline=False)[-1, count] == 19


def test_first_column_of_a_named_kind_fills_its_slot() -> None:
    """Two disk-latency columns: the first fills the named slot, both feed the summaries."""
    times = np.arange(50) * 300.0
    values = {"disk_latency_ms:sda": np.full(50, 5.0), "disk_latency_ms:sdb": np.full(50, 80.0)}
    features = series_features(times, values, baseline=False)
    assert features[-1, FEATURE_NAMES.index("disk_latency_ms__last")] == 5.0


def test_unknown_column_kind_is_refused() -> None:
    """A key whose kind is not a metric raises KeyError naming it."""
    with pytest.raises(KeyError, match="bogus"):
        series_features(np.arange(3.0), {"bogus:x": np.zeros(3)})


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
    soonest = features[-1, FEATURE_NAMES.index("exhaustion__hours_min")]
    assert abs(soonest - (100 - memory[-1]) / 12) < 0.05


def test_sanitize_ignores_and_counts_garbage() -> None:
    """NaN, infinities, negatives, absurd values and None become NaN and are counted."""
    counts = empty_counts()
    raw = [10.0, None, float("nan"), float("inf"), -5.0, 1e9, 99.0]
    clean = sanitize("cpu_percent", raw, counts)
    assert np.isnan(clean[1:6]).all() and clean[0] == 10 and clean[6] == 99
    assert counts == {"missing": 1, "nan": 2, "negative": 1, "absurd": 1}
    # A metric of unknown meaning may be negative; a column key selects its kind's range.
    assert sanitize("other", [-5.0])[0] == -5.0
    assert np.isnan(sanitize("cpu_percent:core0", [-5.0])[0])


def test_garbage_never_crashes_the_features() -> None:
    """A window of nothing but garbage yields NaN features for that metric, no exception."""
    times = np.arange(10) * 300.0
    garbage = sanitize("cpu_percent", [float("nan"), -1, 1e30, None, float("inf")] * 2)
    features = series_features(times, {"cpu_percent": garbage})
    count = FEATURE_NAMES.index("columns__columns")
    assert (features[:, count] == 0).all()
    assert np.isnan(np.delete(features[:, :WINDOW_COLUMNS - 1], count, axis=1)).all()


def test_samples_become_columns() -> None:
    """MetricSample rows turn into per-column lists; network in+out are summed; extra
    columns appear with None where a sample lacks them."""
    samples = [MetricSample(0.0, "a", cpu_percent=5, network_in_bytes=1, network_out_bytes=2),
               MetricSample(300.0, "a", memory_percent=7, columns={"other:m01": 0.5})]
    times, columns = samples_to_arrays(samples)
    assert list(times) == [0.0, 300.0]
    assert set(columns) == {*METRICS, "other:m01"}
    assert columns["network_bytes"] == [3.0, None]
    assert columns["cpu_percent"] == [5, None] and columns["memory_percent"] == [None, 7]
    assert columns["other:m01"] == [None, 0.5]
