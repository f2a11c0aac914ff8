"""Exhaustion forecasts: the right time on a fill-up, silence on noise, a sentence for the
decision's reason."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.exhaustion import (
    ExhaustionConfig,
    Forecast,
    describe_hours,
    forecasts,
    hours_to_exhaustion,
)
from models.scoring import series_forecasts


def _window(values: np.ndarray, step_s: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    times = 1.7e9 + np.arange(values.size) * step_s
    return times[None, :], values[None, :]


@pytest.mark.parametrize("seed", range(5))
def test_fill_up_forecast_within_ten_percent(seed: int) -> None:
    """A disk filling 0.5 %/5 min from 60 % with noisy readings: full in (100 - level) / rate,
    forecast within ±10 %."""
    rng = np.random.default_rng(seed)
    used = 60 + 0.5 * np.arange(36) + rng.normal(0, 0.4, 36)
    times, values = _window(used)
    truth_h = (100 - (60 + 0.5 * 35)) / 6.0  # 6 % per hour
    hours = hours_to_exhaustion(times, values, 100.0)[0]
    assert abs(hours - truth_h) <= 0.1 * truth_h


def test_flat_noisy_resource_gets_no_forecast() -> None:
    """Noise around a flat level is not a trend: no forecast at all."""
    rng = np.random.default_rng(3)
    times, values = _window(70 + rng.normal(0, 1.0, 36))
    assert np.isnan(hours_to_exhaustion(times, values, 100.0)[0])


def test_gaps_and_too_little_data() -> None:
    """Missing samples are skipped; fewer than the minimum give no forecast."""
    used = 50 + 1.0 * np.arange(36)
    used[::3] = np.nan
    times, values = _window(used)
    assert abs(hours_to_exhaustion(times, values, 100.0)[0] - (100 - 85) / 12) < 0.05
    times, values = _window(np.array([50.0, 51, 52]))
    assert np.isnan(hours_to_exhaustion(times, values, 100.0)[0])


def test_soonest_resource_and_its_text() -> None:
    """Of a slowly filling disk and fast-growing connections, the connections come first;
    the reason reads like an operator would write it."""
    steps = np.arange(36)
    times = (1.7e9 + steps * 300.0)[None, :]
    values = {"disk_used_percent:/var": (50 + 0.1 * steps)[None, :],
              "connections_percent": (40 + 1.5 * steps)[None, :]}
    (forecast,) = forecasts(times, values)
    assert forecast is not None and forecast.column == "connections_percent"
    assert forecast.text == f"connections exhausted in {describe_hours(forecast.hours)}"
    assert Forecast("disk_used_percent", 38 / 60).text == "disk full in 38 min"
    assert Forecast("disk_used_percent:/var", 2.5).text == "disk full (/var) in 2.5 h"
    assert Forecast("xid_age_percent", 0.0).text == "transaction-ID wraparound now"


def test_replication_lag_budget_is_configurable() -> None:
    """Replication lag runs out against a configured budget."""
    lag = 1e6 * np.arange(36)  # +12 MB per hour
    times, values = _window(lag)
    small = ExhaustionConfig(replication_lag_budget_bytes=40e6)
    (forecast,) = forecasts(times, {"replication_lag_bytes": values}, small)
    assert forecast is not None and abs(forecast.hours - (40e6 - 35e6) / 12e6) < 0.05


def test_series_forecast_is_causal() -> None:
    """Per-row forecasts of a series: none while the disk is flat, a shrinking lead once it
    fills."""
    used = np.concatenate([np.full(60, 40.0), 40 + 0.5 * np.arange(1, 61)])
    times = 1.7e9 + np.arange(used.size) * 300.0
    rows = series_forecasts(times, {"disk_used_percent": used})
    assert all(f is None for f in rows[:60])
    late = [f.hours for f in rows[100:] if f is not None]
    assert late and all(a > b for a, b in itertools.pairwise(late))
