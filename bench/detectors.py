"""Detectors compared by the evaluation and the episode-level scoring of their alarms.

A detector turns one series into a score per row; the same policy (threshold, consecutive
readings, cooldown) turns scores into migrations for every detector, so the comparison is
about the scores alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.features import series_features
from models.metrics import FloatArray
from models.predictor import Predictor
from models.scoring import scores_from_features

GAUSSIAN_WINDOW_S = 10800.0
"""History the windowed-Gaussian baseline compares each value to (3 h, the long window)."""


@dataclass(frozen=True)
class Episode:
    """A labelled failure or anomaly, and the span in which an alarm counts as catching it."""

    match_start: float
    """Earliest alarm that counts (epoch seconds)."""
    label_time: float
    """The failure or labelled anomaly; lead time is measured to it."""
    match_end: float
    """Latest alarm that counts."""
    kind: str
    """Failure mode, or ``nab``."""


def model_scores(times: FloatArray, values: Mapping[str, FloatArray], predictor: Predictor,
                 history: float = 0.0) -> dict[str, FloatArray]:
    """Model probability and both readiness profiles for every row, computed once."""
    features = series_features(times, values, predictor.feature_config, max_samples=64)
    default = scores_from_features(features, predictor, history, "default")
    spec = scores_from_features(features, predictor, history, "spec")
    return {"probability": default.failure_probability, "default": default.readiness_score,
            "spec": spec.readiness_score}


def windowed_gaussian(times: FloatArray, values: Mapping[str, FloatArray],
                      window_s: float = GAUSSIAN_WINDOW_S) -> FloatArray:
    """Baseline score: the largest |z| of any metric against its own trailing window.

    z compares the current value with the mean and standard deviation of the samples in the
    preceding ``window_s`` (the current one excluded), like NAB's windowed-Gaussian detector.
    """
    best = np.zeros(times.shape)
    for series in values.values():
        ok = ~np.isnan(series)
        t, v = times[ok], series[ok]
        if t.size < 3:
            continue
        c1 = np.concatenate([[0.0], np.cumsum(v)])
        # Centre before squaring: network counters are ~1e8 and the sums would cancel.
        centre = float(np.median(v))
        c2 = np.concatenate([[0.0], np.cumsum((v - centre) ** 2)])
        start = np.searchsorted(t, t - window_s, side="left")
        end = np.arange(t.size)  # exclusive: the current sample is not in its own baseline
        n = end - start
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (c1[end] - c1[start]) / n
            var = (c2[end] - c2[start]) / n - (mean - centre) ** 2
            std = np.sqrt(np.maximum(var, 0.0))
            z = np.abs(v - mean) / (std + 0.01 * np.abs(mean) + 1e-9)
        z[n < 6] = 0.0
        full = np.zeros(times.shape)
        full[ok] = np.nan_to_num(z)
        best = np.maximum(best, full)
    return best


def score_alarms(alarms: FloatArray, episodes: list[Episode]) -> dict[str, Any]:
    """Match alarm times to episodes.

    Returns counts of alarms (true = inside some episode's match span), caught episodes
    (before / during their label time) and lead times in hours (label time - first alarm).
    """
    true_alarms = 0
    for alarm in alarms.tolist():
        if any(e.match_start <= alarm <= e.match_end for e in episodes):
            true_alarms += 1
    caught_before = caught_during = 0
    lead_h: list[float] = []
    caught_kinds: list[str] = []
    for episode in episodes:
        inside = alarms[(alarms >= episode.match_start) & (alarms <= episode.match_end)]
        if inside.size == 0:
            continue
        first = float(inside.min())
        caught_kinds.append(episode.kind)
        lead_h.append((episode.label_time - first) / 3600.0)
        if first < episode.label_time:
            caught_before += 1
        else:
            caught_during += 1
    return {
        "alarms": int(alarms.size), "true_alarms": true_alarms,
        "false_alarms": int(alarms.size) - true_alarms,
        "episodes": len(episodes), "caught_before": caught_before,
        "caught_during": caught_during, "lead_h": lead_h, "caught_kinds": caught_kinds,
    }
