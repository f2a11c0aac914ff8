"""The failure probability against the instance's own recent level.

The model's calibrated probability is what the readiness score read until now. On real
servers a metric can move to a new level and stay there for days (on ASD's omi-9 three
metrics that were constant for 30 days switched on for two days and more around a few short
incidents); the probability then sits above the migration threshold for as long as the shift
lasts, and the policy migrates again at every end of its cooldown: 27 of the 28 false
migrations of the leave-server-out evaluation came from one such server. A condition that has
lasted for hours is no longer news about the next two hours, so the readiness score reads the
*relative* probability: the probability above the instance's usual level, rescaled to 0..1,

    relative = max(p - usual, 0) / (1 - usual)

where ``usual`` is an exponentially weighted mean of the instance's own past probabilities
(:data:`RELATIVE_HALF_LIFE_S`), learned causally (the current reading is judged against the
level before it, then learned) and starting from 0, so a new instance is judged by its raw
probability until it has a history. The rescaling keeps the top of the scale: a probability
near 1 stays near 1 whatever the level (a sudden failure of a server that was already
uneasy still scores high), while a level that has been 0.2 for hours no longer reads as 0.2.

Measured leave-server-out (``bench/eval.py``, thresholds chosen on training folds only):
false migrations on the 8 ASD servers fell from 28 to 8 (0.233 to 0.067 per instance-day)
with the same 6 incidents caught in time; in the comparison that chose this form
(docs/model.md) every half-life from 1 to 6 h gave 6 or 7 false migrations, so 3 h is not a
fine-tuned value.
"""

from __future__ import annotations

import math

import numpy as np

from models.metrics import FloatArray

RELATIVE_HALF_LIFE_S = 3 * 3600.0
"""Half-life of the instance's usual probability level."""
FIRST_STEP_S = 300.0
"""What an instance's first reading weighs, as a step of that many seconds (one sample at
the 5-minute steps of the real data): the level starts at 0, not at the first reading."""


def relative_probability(probability: FloatArray, usual: FloatArray) -> FloatArray:
    """``max(p - usual, 0) / (1 - usual)``; the probability itself where ``usual`` is NaN
    (no history). NaN stays NaN."""
    p = np.asarray(probability, dtype=np.float64)
    level = np.asarray(usual, dtype=np.float64)
    known = np.isfinite(level)
    base = np.where(known, np.clip(level, 0.0, 1.0 - 1e-6), 0.0)
    with np.errstate(invalid="ignore"):
        return np.clip((p - base) / (1.0 - base), 0.0, 1.0).astype(np.float64)


def learn_level(usual: FloatArray, learned_at: FloatArray, probability: FloatArray,
                at: FloatArray, half_life_s: float = RELATIVE_HALF_LIFE_S
                ) -> tuple[FloatArray, FloatArray]:
    """One step of the usual level for many instances at once.

    Args:
        usual: each instance's level (NaN: none yet, which learns as if it were 0).
        learned_at: when each level last learned (NaN: never).
        probability: the new reading of each instance (NaN learns nothing).
        at: its time.
        half_life_s: the level's half-life.

    Returns:
        The new levels and their times. A reading not newer than ``learned_at`` learns
        nothing (a window scored twice, a clock that stepped back).
    """
    level = np.nan_to_num(np.asarray(usual, dtype=np.float64), nan=0.0)
    since = np.asarray(at, dtype=np.float64) - np.asarray(learned_at, dtype=np.float64)
    first = np.isnan(since)
    with np.errstate(invalid="ignore"):
        # A first reading weighs one usual step, not the whole level: the level starts at 0.
        step = np.where(first, FIRST_STEP_S, since)
        weight = np.where(step > 0, -np.expm1(-math.log(2.0) * step / half_life_s), 0.0)
    learns = np.isfinite(probability) & (first | (since > 0))
    new_level = np.where(learns, level + weight * (np.nan_to_num(probability) - level),
                         np.asarray(usual, dtype=np.float64))
    new_at = np.where(learns, at, learned_at)
    return new_level.astype(np.float64), np.asarray(new_at, dtype=np.float64)


def series_usual_levels(times: FloatArray, probability: FloatArray,
                        half_life_s: float = RELATIVE_HALF_LIFE_S) -> FloatArray:
    """The usual level *before* every row of one series (NaN until a reading was learned);
    the scalar form of :meth:`models.baselines.BaselineBank.usual_probability`, row by row: a
    row at the time of the last learned one (a duplicate timestamp) is judged against the
    level that one was judged against, as a window the fleet scores twice is."""
    out = np.full(probability.shape, np.nan)
    level = learned = judged = math.nan
    rate = math.log(2.0) / half_life_s
    for row, (moment, value) in enumerate(zip(times.tolist(), probability.tolist(),
                                              strict=True)):
        out[row] = judged if moment == learned else level
        if value != value:  # NaN learns nothing
            continue
        if learned != learned:
            weight, base = -math.expm1(-rate * FIRST_STEP_S), 0.0
        elif moment > learned:
            weight, base = -math.expm1(-rate * (moment - learned)), level
        else:
            continue
        judged = level
        level, learned = base + weight * (value - base), moment
    return out
