"""The Migration Readiness Score: latest metrics + history + model probability → 0..100.

Two profiles:

``spec``
    The product specification's pseudocode, bit for bit (DESIGN.md §1)::

        cpu  > 80   ? 30*0.8 : (cpu/100)*30
        mem  > 90   ? 25*0.9 : (mem/100)*25
        disk > 50ms ? 20*0.7 : (1 - disk/100ms)*20
        + historicalFailureRate * 15 + predictiveFailureProbability * 10

    It is not monotone: the disk term *rewards* low latency (0 ms adds 20, 50 ms adds 10,
    51 ms adds 14) and the CPU and memory caps sit below the values just under them (81 % CPU
    adds 24, 80 % adds 24, 79 % adds 23.7; 91 % memory adds 22.5, 90 % adds 22.5). The model's
    probability can move it by 10 points at most, so load alone decides: a busy, healthy box
    outscores an idle one that is about to fail.

``default``
    The corrected profile. Every term is a non-decreasing, capped-linear function of a risk
    signal (more CPU, memory, disk latency, failure history or probability never lowers the
    score), and the probability carries 60 of the 100 points because it is the only input that
    looks ahead; load terms (10 each) only tip a borderline probability. ``bench/eval.py``
    measures both profiles on the same data.

A metric that is absent contributes nothing in both profiles (the spec is silent on missing
data; treating missing disk latency as 0 ms would add the spec's full 20 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from models.metrics import FloatArray

Profile = Literal["default", "spec"]
PROFILES: tuple[Profile, ...] = ("default", "spec")


@dataclass(frozen=True)
class ReadinessInput:
    """What the score is computed from; metrics may be ``None`` (not observed)."""

    cpu_percent: float | None
    """Latest CPU utilisation, 0..100."""
    memory_percent: float | None
    """Latest memory utilisation, 0..100."""
    disk_latency_ms: float | None
    """Latest disk I/O latency, milliseconds."""
    historical_failure_rate: float
    """The instance's historical failure rate, 0..1."""
    failure_probability: float
    """The model's probability of failure or degradation within its horizon, 0..1."""


@dataclass(frozen=True)
class DefaultWeights:
    """Weights of the ``default`` profile; they sum to 100."""

    cpu: float = 10.0
    """Points at 100 % CPU."""
    memory: float = 10.0
    """Points at 100 % memory."""
    disk: float = 10.0
    """Points at ``disk_saturation_ms`` or more."""
    history: float = 10.0
    """Points at a historical failure rate of 1."""
    probability: float = 60.0
    """Points at a failure probability of 1."""
    disk_saturation_ms: float = 100.0
    """Disk latency at which the disk term is full (the spec's 100 ms scale)."""


def spec_score(inputs: ReadinessInput) -> float:
    """The specification's formula exactly; absent metrics contribute 0."""
    score = 0.0
    cpu, mem, disk = (_known(inputs.cpu_percent), _known(inputs.memory_percent),
                      _known(inputs.disk_latency_ms))
    if cpu is not None:
        score += 30 * 0.8 if cpu > 80 else (cpu / 100) * 30
    if mem is not None:
        score += 25 * 0.9 if mem > 90 else (mem / 100) * 25
    if disk is not None:
        score += 20 * 0.7 if disk > 50 else (1 - disk / 100) * 20
    score += inputs.historical_failure_rate * 15
    score += inputs.failure_probability * 10
    return score


def _known(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _fraction(value: float | None, full_at: float) -> float:
    if value is None or math.isnan(value):
        return 0.0
    return min(max(value / full_at, 0.0), 1.0)


def default_score(inputs: ReadinessInput, weights: DefaultWeights | None = None) -> float:
    """The corrected, monotone profile (see the module docstring)."""
    w = weights or DefaultWeights()
    return (
        w.cpu * _fraction(inputs.cpu_percent, 100.0)
        + w.memory * _fraction(inputs.memory_percent, 100.0)
        + w.disk * _fraction(inputs.disk_latency_ms, w.disk_saturation_ms)
        + w.history * _fraction(inputs.historical_failure_rate, 1.0)
        + w.probability * _fraction(inputs.failure_probability, 1.0)
    )


def readiness_score(inputs: ReadinessInput, profile: Profile = "default") -> float:
    """Score ``inputs`` with the named profile.

    Raises:
        ValueError: unknown profile.
    """
    if profile == "default":
        return default_score(inputs)
    if profile == "spec":
        return spec_score(inputs)
    raise ValueError(f"unknown readiness profile {profile!r}; use one of {', '.join(PROFILES)}")


def readiness_scores(
    cpu_percent: FloatArray,
    memory_percent: FloatArray,
    disk_latency_ms: FloatArray,
    historical_failure_rate: FloatArray,
    failure_probability: FloatArray,
    profile: Profile = "default",
) -> FloatArray:
    """:func:`readiness_score` for whole arrays at once (NaN = not observed).

    Same expressions in the same order as the scalar functions, so both give identical
    floats; the fleet scorer uses this one because a Python loop would cost more than the
    model.
    """
    cpu, mem, disk = (np.asarray(a, dtype=np.float64)
                      for a in (cpu_percent, memory_percent, disk_latency_ms))
    history = np.asarray(historical_failure_rate, dtype=np.float64)
    probability = np.asarray(failure_probability, dtype=np.float64)
    if profile == "spec":
        with np.errstate(invalid="ignore"):
            score = np.zeros(np.broadcast(cpu, mem, disk, history, probability).shape)
            score += np.where(np.isnan(cpu), 0.0,
                              np.where(cpu > 80, 30 * 0.8, (cpu / 100) * 30))
            score += np.where(np.isnan(mem), 0.0,
                              np.where(mem > 90, 25 * 0.9, (mem / 100) * 25))
            score += np.where(np.isnan(disk), 0.0,
                              np.where(disk > 50, 20 * 0.7, (1 - disk / 100) * 20))
            score += history * 15
            score += probability * 10
        return score
    if profile == "default":
        w = DefaultWeights()

        def fraction(values: FloatArray, full_at: float) -> FloatArray:
            return np.where(np.isnan(values), 0.0, np.clip(values / full_at, 0.0, 1.0))

        return (
            w.cpu * fraction(cpu, 100.0)
            + w.memory * fraction(mem, 100.0)
            + w.disk * fraction(disk, w.disk_saturation_ms)
            + w.history * fraction(history, 1.0)
            + w.probability * fraction(probability, 1.0)
        )
    raise ValueError(f"unknown readiness profile {profile!r}; use one of {', '.join(PROFILES)}")
