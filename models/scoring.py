"""Metrics → failure probability → readiness score → decision, for a series or a fleet.

Two entry points over the same pieces:

- :func:`score_series` scores every row of one instance's history causally (the trace CLI
  and the evaluation use it) and runs the policy row by row;
- :func:`score_windows` scores the newest row of many instances' windows at once (the
  scoring activity uses it); the caller runs the policy on the batch. Given a
  :class:`~models.baselines.BaselineBank` and the instances' ids, it also learns and uses
  each instance's own baseline.

Both also say what runs out soonest (:attr:`Scores.forecasts`, e.g. "disk full in 38 min"),
for the decision's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from contracts.policy import FleetBudget, Policy, PolicyState
from models.baselines import BaselineBank
from models.exhaustion import ExhaustionConfig, Forecast, exhaustion_columns, forecasts
from models.features import (
    FEATURE_NAMES,
    Float32Array,
    series_features,
    sliding_windows,
    window_features,
)
from models.metrics import FloatArray
from models.policy import Decision, Reading, decide, finish_migration, refused
from models.predictor import Predictor
from models.readiness import Profile, readiness_scores
from models.relative import relative_probability, series_usual_levels

_LATEST = {name: FEATURE_NAMES.index(f"{name}__last")
           for name in ("cpu_percent", "memory_percent", "disk_latency_ms")}


@dataclass
class Scores:
    """Probability and readiness score per row."""

    failure_probability: FloatArray
    """Calibrated probability of failure or degradation within the model's horizon."""
    readiness_score: FloatArray
    """Migration Readiness Score, 0..100."""
    relative_probability: FloatArray = field(default_factory=lambda: np.empty(0),
                                             kw_only=True)
    """The probability above the instance's own usual level, rescaled to 0..1: what the
    readiness score reads (:mod:`models.relative`)."""
    forecasts: list[Forecast | None] = field(default_factory=list, kw_only=True)
    """Per row, the resource that runs out soonest within the forecast cap (``None``:
    nothing does); ``forecast.text`` is "disk full in 38 min". Empty when not asked for."""

    def forecast_text(self, row: int) -> str | None:
        """The forecast of ``row`` as text for a reason, or ``None``."""
        if row >= len(self.forecasts):
            return None
        forecast = self.forecasts[row]
        return forecast.text if forecast is not None else None


@dataclass
class SeriesScores(Scores):
    """:class:`Scores` of one series plus the policy's decision per row."""

    decisions: list[Decision] = field(default_factory=list)
    """One decision per row."""


def scores_from_features(
    features: Float32Array,
    predictor: Predictor,
    historical_failure_rate: FloatArray | float,
    profile: Profile,
    *,
    num_threads: int = 0,
    times: FloatArray | None = None,
) -> Scores:
    """Probability and readiness score for feature rows (latest metrics come from them).

    With ``times`` the rows are one instance's series in time order, and each row's
    probability is judged against the instance's usual level before it
    (:mod:`models.relative`); without, every row is judged as the first of its instance.
    """
    probability = predictor.predict(features, num_threads=num_threads)
    usual = (series_usual_levels(times, probability) if times is not None
             else np.full(probability.shape, np.nan))
    return readiness_from_probability(features, probability, usual, historical_failure_rate,
                                      profile)


def readiness_from_probability(
    features: Float32Array,
    probability: FloatArray,
    usual_probability: FloatArray,
    historical_failure_rate: FloatArray | float,
    profile: Profile,
) -> Scores:
    """Readiness scores from the model's probabilities and each instance's usual level
    (NaN: no history), the latest metrics read from the feature rows."""
    relative = relative_probability(probability, usual_probability)
    latest = {name: features[:, column].astype(np.float64) for name, column in _LATEST.items()}
    history = np.broadcast_to(np.asarray(historical_failure_rate, dtype=np.float64),
                              probability.shape)
    score = readiness_scores(
        latest["cpu_percent"], latest["memory_percent"], latest["disk_latency_ms"], history,
        relative, profile,
    )
    return Scores(probability, score, relative_probability=relative)


def score_series(
    times: FloatArray,
    values: Mapping[str, FloatArray],
    predictor: Predictor,
    *,
    profile: Profile = "default",
    policy: Policy | None = None,
    historical_failure_rate: float = 0.0,
    instance_id: str = "trace",
    max_samples: int = 256,
    baseline: Float32Array | bool = True,
) -> SeriesScores:
    """Score every row of one series, each from data up to that row only.

    Args:
        times: (T,) epoch seconds, non-decreasing.
        values: canonical metric → (T,) sanitized values.
        predictor: the model.
        profile: readiness profile.
        policy: the instance's policy (default :class:`~contracts.policy.Policy`).
        historical_failure_rate: the instance's failure history, 0..1.
        instance_id: name used in the decisions.
        max_samples: history per row (see :func:`models.features.series_features`).
        baseline: per-instance baselines from the first row (``True``), none (``False``), or
            precomputed (see :func:`models.features.series_features`).
    """
    features = series_features(times, values, predictor.feature_config,
                               max_samples=max_samples, baseline=baseline,
                               baseline_config=predictor.baseline_config)
    scores = scores_from_features(features, predictor, historical_failure_rate, profile,
                                  times=times)
    decisions = run_policy(times, scores.readiness_score, policy or Policy(), instance_id)
    return SeriesScores(scores.failure_probability, scores.readiness_score, decisions,
                        relative_probability=scores.relative_probability,
                        forecasts=series_forecasts(times, values, max_samples=max_samples))


def series_forecasts(times: FloatArray, values: Mapping[str, FloatArray], *,
                     max_samples: int = 256, config: ExhaustionConfig | None = None,
                     ) -> list[Forecast | None]:
    """The soonest exhaustion forecast at every row of one series (causal, like the
    features: row ``t`` fits samples up to ``t``)."""
    keys = exhaustion_columns(list(values))
    if not keys:
        return [None] * times.shape[0]
    pad = np.full(max_samples - 1, np.nan)
    padded_times = np.concatenate([pad, times])
    out: list[Forecast | None] = []
    for start in range(0, times.shape[0], 4096):
        stop = min(start + 4096, times.shape[0])
        window_times = sliding_windows(padded_times, start, stop, max_samples)
        window_values = {k: sliding_windows(np.concatenate([pad, values[k]]), start, stop,
                                     max_samples) for k in keys}
        out += forecasts(window_times, window_values, config)
    return out


def run_policy(times: FloatArray, readiness: FloatArray, policy: Policy,
               instance_id: str = "trace") -> list[Decision]:
    """The decision at every row of one instance's scores, as the product takes it: the
    watcher's policy decides, and the protection takes a migration unless it is within
    ``policy.cooldown_s`` of the last one it took (then it refuses, and the watcher stays quiet
    for the cooldown left). A refused migration is returned as a hold."""
    state = PolicyState()
    budget = FleetBudget(max_concurrent=1, max_per_hour=3600, migration_duration_s=0.0)
    taken: float | None = None
    decisions = []
    for now, score in zip(times.tolist(), readiness.tolist(), strict=True):
        (decision,), state = decide(state, budget, [Reading(instance_id, score, policy)], now)
        if decision.action == "migrate":
            left = 0.0 if taken is None else taken + policy.cooldown_s - now
            if left > 0:
                state = refused(state, instance_id, now, left)
                decision = Decision(instance_id, "hold", False,
                                    f"In cooldown for {left:.0f} s after the last migration.")
            else:
                taken = now
                state = finish_migration(state, instance_id)
        decisions.append(decision)
    return decisions


def score_windows(
    times: FloatArray,
    values: Mapping[str, FloatArray],
    predictor: Predictor,
    historical_failure_rate: FloatArray | float = 0.0,
    profile: Profile = "default",
    *,
    num_threads: int = 0,
    baselines: BaselineBank | None = None,
    instance_ids: Sequence[str] | None = None,
) -> Scores:
    """Score the newest row of each window: (rows, W) times and sanitized values.

    Args:
        times: (rows, W) epoch seconds, oldest first, NaN padding on the left.
        values: column key → (rows, W) sanitized values.
        predictor: the model.
        historical_failure_rate: per row (or one for all), 0..1.
        profile: readiness profile.
        num_threads: LightGBM threads.
        baselines: the worker's bank of per-instance baselines; it learns every sample newer
            than what it saw of each instance, and each instance's usual probability level
            (:mod:`models.relative`). Without it the baseline features are NaN and every
            window is judged by its raw probability.
        instance_ids: one per row; required with ``baselines``.
    """
    baseline = None
    if baselines is not None:
        if instance_ids is None or len(instance_ids) != times.shape[0]:
            raise ValueError("score_windows needs one instance id per window with baselines")
        baseline = baselines.features(instance_ids, times, values)
    features = window_features(times, values, predictor.feature_config, baseline=baseline)
    probability = predictor.predict(features, num_threads=num_threads)
    if baselines is not None and instance_ids is not None:
        usual = baselines.usual_probability(instance_ids, times[:, -1], probability)
    else:
        usual = np.full(probability.shape, np.nan)
    scores = readiness_from_probability(features, probability, usual, historical_failure_rate,
                                        profile)
    scores.forecasts = forecasts(times, values)
    return scores
