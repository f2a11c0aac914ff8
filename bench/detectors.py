"""Detectors compared by the evaluation, the policy replay, and the episode-level scoring.

A detector turns one series into a score per row; the same policy (threshold, consecutive
readings, cooldown) turns scores into migrations for every detector, so the comparison is
about the scores alone. :func:`migrations` replays the policy of one instance exactly as
:func:`models.scoring.run_policy` does (tested), at a fraction of the cost, because the
evaluation replays every series at dozens of thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.policy import Policy
from models.features import Float32Array
from models.metrics import FloatArray
from models.predictor import Predictor
from models.scoring import scores_from_features

GAUSSIAN_WINDOW_S = 86400.0
"""History the windowed-Gaussian baseline compares each value to (24 h, as in the issue)."""

LEAD_MARGIN_S = 7200.0
"""An alarm up to 2 hours before an episode counts as catching it early, not as false."""

IN_TIME_S = 900.0
"""Caught "in time": no later than 15 minutes after the onset."""


@dataclass(frozen=True)
class Episode:
    """A labelled failure, incident or anomaly window."""

    start: float
    """Onset: the first labelled moment (epoch seconds). Lead time is measured to it."""
    end: float
    """Last labelled moment; an alarm up to here still catches the episode (late)."""
    kind: str
    """Failure mode, incident type, or ``nab``."""
    margin_s: float = LEAD_MARGIN_S
    """Alarms this long before the onset catch it early."""

    @property
    def match_start(self) -> float:
        """Earliest alarm that counts."""
        return self.start - self.margin_s


def migrations(times: FloatArray, scores: FloatArray, threshold: float,
               policy: Policy | None = None) -> FloatArray:
    """Times at which the product migrates one instance, given its scores.

    The same rule as :func:`models.scoring.run_policy` (the policy's decision, then the
    protection's cooldown), walked over runs of high scores only: ``consecutive_readings``
    scores at or above the threshold in a row call for a migration and reset the streak; the
    protection takes it unless it comes within ``cooldown_s`` of the last one taken, and then
    refuses it, which keeps the policy quiet until that cooldown ends (the streak keeps
    counting meanwhile). NaN is not high. The fleet budget cannot bind for one instance.
    """
    policy = policy or Policy()
    high = scores >= threshold  # NaN compares False
    if not high.any():
        return np.empty(0)
    need, cooldown = policy.consecutive_readings, policy.cooldown_s
    out: list[float] = []
    last = quiet_until = -np.inf
    # Only runs of high scores matter; walk them instead of every row.
    edges = np.flatnonzero(np.diff(np.concatenate([[0], high.view(np.int8), [0]])))
    time_list = times.tolist()
    for begin, stop in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
        streak = 0
        for row in range(begin, stop):
            moment = time_list[row]
            streak += 1
            if streak < need or moment < quiet_until:
                continue
            streak = 0
            if moment < last + cooldown:  # refused by the protection: quiet until it ends
                quiet_until = last + cooldown
            else:
                out.append(moment)
                last = moment
    return np.asarray(out)


def model_scores(features: Float32Array, predictor: Predictor, history: float = 0.0,
                 times: FloatArray | None = None) -> dict[str, FloatArray]:
    """Model probability and both readiness profiles for feature rows, computed once; with
    ``times`` the rows are one instance's series and each is judged against the instance's
    usual level before it, as the product does (:mod:`models.relative`)."""
    default = scores_from_features(features, predictor, history, "default", times=times)
    spec = scores_from_features(features, predictor, history, "spec", times=times)
    return {"probability": default.failure_probability, "default": default.readiness_score,
            "spec": spec.readiness_score}


def windowed_gaussian(times: FloatArray, values: Mapping[str, FloatArray],
                      window_s: float = GAUSSIAN_WINDOW_S, min_samples: int = 6) -> FloatArray:
    """Baseline score: the largest |z| of any column against its own trailing window.

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
        z[n < min_samples] = 0.0
        full = np.zeros(times.shape)
        full[ok] = np.nan_to_num(z)
        best = np.maximum(best, full)
    return best


def random_scores(rows: int, seed: int) -> FloatArray:
    """The random-score control: independent uniform scores, no information at all."""
    return np.random.default_rng(seed).random(rows)


def score_alarms(alarms: FloatArray, episodes: Sequence[Episode],
                 region: tuple[float, float] | None = None) -> dict[str, Any]:
    """Match alarm times to episodes.

    Args:
        alarms: migration times.
        episodes: the labelled episodes.
        region: only alarms in ``[start, end]`` count (the labelled part of a series).

    Returns:
        Counts: ``alarms``, ``false_alarms`` (outside every episode and its lead margin),
        ``episodes``, ``caught_before`` (first alarm before the onset),
        ``caught_in_time`` (no later than :data:`IN_TIME_S` after the onset, early ones
        included), ``caught_late`` (later, still inside the episode), plus ``lead_min``
        (onset - first alarm, minutes, for every caught episode; positive = early) and
        ``kinds`` (per kind: [caught in time, caught at all, episodes]).
    """
    if region is not None:
        alarms = alarms[(alarms >= region[0]) & (alarms <= region[1])]
    false_alarms = sum(1 for alarm in alarms.tolist()
                       if not any(e.match_start <= alarm <= e.end for e in episodes))
    before = in_time = late = 0
    lead: list[float] = []
    kinds: dict[str, list[int]] = {}
    for episode in episodes:
        counts = kinds.setdefault(episode.kind, [0, 0, 0])
        counts[2] += 1
        inside = alarms[(alarms >= episode.match_start) & (alarms <= episode.end)]
        if inside.size == 0:
            continue
        first = float(inside.min())
        lead.append((episode.start - first) / 60.0)
        counts[1] += 1
        if first < episode.start:
            before += 1
        if first <= episode.start + IN_TIME_S:
            in_time += 1
            counts[0] += 1
        else:
            late += 1
    return {"alarms": int(alarms.size), "false_alarms": false_alarms,
            "episodes": len(episodes), "caught_before": before, "caught_in_time": in_time,
            "caught_late": late, "lead_min": lead, "kinds": kinds}
