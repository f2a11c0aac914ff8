"""The Migration Readiness Score: the spec profile pinned, the default profile monotone."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from models.readiness import (
    ReadinessInput,
    default_score,
    readiness_score,
    readiness_scores,
    spec_score,
)


def _spec(cpu: float | None = None, mem: float | None = None, disk: float | None = None,
          history: float = 0.0, probability: float = 0.0) -> float:
    return spec_score(ReadinessInput(cpu, mem, disk, history, probability))


@pytest.mark.parametrize(
    ("cpu", "mem", "disk", "history", "probability", "expected"),
    [
        (0, None, None, 0, 0, 0.0),
        (50, None, None, 0, 0, 15.0),
        (79, None, None, 0, 0, 23.7),
        (80, None, None, 0, 0, 24.0),
        (81, None, None, 0, 0, 24.0),
        (100, None, None, 0, 0, 24.0),
        (None, 90, None, 0, 0, 22.5),
        (None, 91, None, 0, 0, 22.5),
        (None, 89, None, 0, 0, 22.25),
        (None, None, 0, 0, 0, 20.0),
        (None, None, 50, 0, 0, 10.0),
        (None, None, 51, 0, 0, 14.0),
        (None, None, 100, 0, 0, 14.0),
        (None, None, None, 1, 0, 15.0),
        (None, None, None, 0, 1, 10.0),
        (81, 91, 51, 1, 1, 24 + 22.5 + 14 + 15 + 10),
        (40, 60, 20, 0.2, 0.5, 12 + 15 + 16 + 3 + 5),
    ],
)
def test_spec_profile_pinned(cpu: float | None, mem: float | None, disk: float | None,
                             history: float, probability: float, expected: float) -> None:
    """The spec profile reproduces DESIGN.md §1 exactly, odd disk branch and caps included."""
    assert _spec(cpu, mem, disk, history, probability) == pytest.approx(expected, abs=1e-12)


def test_spec_profile_is_not_monotone_which_is_why_default_exists() -> None:
    """More disk latency lowers the spec score (0 ms > 50 ms) and 81 % CPU equals 80 %."""
    assert _spec(disk=0) > _spec(disk=50) < _spec(disk=51)
    assert _spec(cpu=81) == _spec(cpu=80)
    assert _spec(mem=91) < _spec(mem=90.0) + 1e-9


def test_missing_metrics_contribute_nothing() -> None:
    """An absent or NaN metric adds 0 in both profiles (not the spec's 20 for 0 ms disk)."""
    for profile in ("spec", "default"):
        missing = readiness_score(ReadinessInput(None, None, None, 0, 0), profile)
        nan = readiness_score(ReadinessInput(math.nan, math.nan, math.nan, 0, 0), profile)
        assert missing == nan == 0.0


def test_default_profile_is_monotone_on_a_grid() -> None:
    """Raising any single input never lowers the default score (property over a grid)."""
    cpu = [0, 30, 79, 80, 81, 100]
    mem = [0, 50, 89, 90, 91, 100]
    disk = [0, 10, 49, 50, 51, 100, 500]
    history = [0, 0.5, 1]
    probability = [0, 0.1, 0.5, 0.9, 1]
    grids = [cpu, mem, disk, history, probability]
    for point in itertools.product(*grids):
        base = default_score(ReadinessInput(*point))
        for axis, values in enumerate(grids):
            for higher in values:
                if higher <= point[axis]:
                    continue
                raised = list(point)
                raised[axis] = higher
                assert default_score(ReadinessInput(*raised)) >= base, (point, axis, higher)


def test_default_profile_weighs_probability_most() -> None:
    """Probability alone moves the default score by 60 points, load alone by at most 30."""
    assert default_score(ReadinessInput(None, None, None, 0, 1)) == pytest.approx(60)
    assert default_score(ReadinessInput(100, 100, 1000, 0, 0)) == pytest.approx(30)


def test_vectorised_scores_equal_scalar_ones() -> None:
    """The batch function gives the scalar function's floats for every profile."""
    rng = np.random.default_rng(3)
    cpu, mem = rng.uniform(0, 100, 200), rng.uniform(0, 100, 200)
    disk = rng.uniform(0, 120, 200)
    cpu[::7] = np.nan
    history, probability = rng.uniform(0, 1, 200), rng.uniform(0, 1, 200)
    for profile in ("spec", "default"):
        batch = readiness_scores(cpu, mem, disk, history, probability, profile)
        for i in range(200):
            one = readiness_score(ReadinessInput(cpu[i], mem[i], disk[i], history[i],
                                                 probability[i]), profile)
            assert batch[i] == pytest.approx(one, abs=1e-12)


def test_unknown_profile_is_refused() -> None:
    """A typo in the profile name is an error, not a silent default."""
    with pytest.raises(ValueError, match="unknown readiness profile"):
        readiness_score(ReadinessInput(1, 1, 1, 0, 0), "fancy")  # type: ignore[arg-type]
