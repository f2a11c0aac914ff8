"""Statistics helpers of the benchmarks (shadow, scale): percentiles, summaries, visibility lags."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float | None:
    """``q``-th percentile with linear interpolation between ranks; ``None`` without values."""
    return float(np.percentile(values, q)) if len(values) else None


def summarise(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p99, max and sample count, to three decimals."""
    return {"p50": rounded(percentile(values, 50)), "p99": rounded(percentile(values, 99)),
            "max": rounded(max(values, default=None)), "samples": len(values)}


def rounded(value: float | None) -> float | None:
    """``value`` to three decimals (``None`` stays ``None``)."""
    return None if value is None else round(value, 3)


def visibility_lags_ms(acked_ids: Sequence[int], ack_times: Sequence[float],
                       polls: Sequence[tuple[float, float, int]]) -> list[float]:
    """Ack-to-visible lag of each acked id, from polls of the shadow's ``max(id)``.

    ``polls`` are ``(sent, returned, max id)`` in time order. An id became visible after the
    previous poll was sent and before the first poll showing it returned; the midpoint of that
    window is taken. A poll may show an id before its ack reached the writer (a synchronous
    standby replays before the client hears back): that counts as 0. Ids no poll showed are
    left out; the caller polls until the shadow caught up.
    """
    # Replay is monotonic, so the running maximum is what the shadow showed by each poll.
    seen = list(itertools.accumulate((top for _, _, top in polls), max))
    lags = []
    for row_id, acked_at in zip(acked_ids, ack_times, strict=True):
        index = bisect.bisect_left(seen, row_id)
        if index < len(seen):
            window_start = polls[max(index - 1, 0)][0]
            visible_at = (window_start + polls[index][1]) / 2
            lags.append(max(0.0, visible_at - acked_at) * 1000)
    return lags
