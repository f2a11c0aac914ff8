"""A chart of a scored trace: the metrics, the failure probability, the score, migrations."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window

import matplotlib.pyplot as plt
import numpy as np

from models.scoring import SeriesScores
from models.trace import Trace


def plot_trace(path: Path, trace: Trace, scores: SeriesScores, threshold: float) -> None:
    """Write a PNG with the trace's metrics (top) and its scores and decisions (bottom)."""
    hours = (trace.times - trace.times[0]) / 3600.0
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for name, values in trace.values.items():
        # Metrics have unrelated units; scale each to its own 0..1 to share one axis.
        low, high = np.nanmin(values, initial=np.inf), np.nanmax(values, initial=-np.inf)
        span = high - low if np.isfinite(high - low) and high > low else 1.0
        top.plot(hours, (values - low) / span, linewidth=0.8, label=name)
    top.set_ylabel("metric (scaled)")
    if len(trace.values) <= 10:  # nineteen unnamed columns make a legend nobody reads
        top.legend(loc="upper left", fontsize="small")
    bottom.plot(hours, scores.readiness_score, linewidth=0.8, label="readiness score")
    bottom.plot(hours, 100 * scores.failure_probability, linewidth=0.8,
                label="failure probability x100")
    bottom.axhline(threshold, color="grey", linestyle="--", linewidth=0.8, label="threshold")
    migrations = [i for i, d in enumerate(scores.decisions) if d.action == "migrate"]
    for index in migrations:
        for axis in (top, bottom):
            axis.axvline(hours[index], color="red", linewidth=0.8)
    bottom.set_ylim(0, 100)
    bottom.set_xlabel(f"hours since {trace.timestamps[0]}")
    bottom.legend(loc="upper left", fontsize="small")
    figure.suptitle(f"{len(migrations)} migrations (red)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
