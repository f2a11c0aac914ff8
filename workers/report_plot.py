"""Draw a protection's report (and the fleet's) as PNG files with matplotlib's Agg backend.

Each drawing function receives exactly the series it plots, and :func:`write_report` saves
those same series as ``report.json`` beside the images, so what a chart shows can be checked
against the workflow history number for number.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from contracts.cutover import EMERGENCY_STEPS, PLANNED_STEPS
from workers.report_history import CutoverTimeline, ProtectionHistory

READINESS_PNG, CUTOVERS_PNG, LAG_PNG, REPORT_JSON = (
    "readiness.png", "cutovers.png", "lag.png", "report.json")
FLEET_PNG, FLEET_JSON = "fleet.png", "fleet.json"
_PHASE_COLOURS = {"protected": "tab:green", "cutting_over": "tab:orange",
                  "degraded": "tab:red", "recovering": "tab:purple"}


def _dates(epochs: list[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in epochs]


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _time_axis(ax: Any) -> None:
    """Tick labels that stay readable from seconds to months."""
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _empty(axes: Any, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def plot_readiness(history: ProtectionHistory, path: Path) -> Path:
    """Readiness score against the threshold (a step line as policies change) and the
    failure probability, with cutovers and external events marked."""
    figure, (score_ax, prob_ax) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    figure.suptitle(f"{history.instance_id}: readiness and failure probability")
    if not history.risk:
        _empty(score_ax, "no risk report in the history yet")
        _empty(prob_ax, "no risk report in the history yet")
        return _save(figure, path)
    times = _dates([p.at for p in history.risk])
    scores = [p.readiness_score for p in history.risk]
    score_ax.plot(times, scores, marker="o", label="readiness score")
    migrate = [(t, s) for t, s, p in zip(times, scores, history.risk, strict=True)
               if p.decision == "migrate"]
    if migrate:
        score_ax.scatter(*zip(*migrate, strict=True), color="tab:red", zorder=3,
                         label="decision: migrate")
    edge = max(history.ended_at, history.risk[-1].at)
    steps = [t.at for t in history.thresholds] + [edge]
    levels = [t.threshold for t in history.thresholds]
    score_ax.step(_dates(steps), [*levels, levels[-1]], where="post", color="tab:red",
                  linestyle="--", label="threshold")
    score_ax.set_ylim(0, 100)
    score_ax.set_ylabel("score (0-100)")
    prob_ax.plot(times, [p.failure_probability for p in history.risk], marker=".",
                 color="tab:purple", label="failure probability")
    prob_ax.set_ylim(0, 1)
    prob_ax.set_ylabel("probability")
    for ax in (score_ax, prob_ax):
        for cutover in history.cutovers:
            ax.axvline(_dates([cutover.started_at])[0], color="black", linewidth=1)
        for event in history.events:
            ax.axvline(_dates([event.at])[0], color="tab:orange", linestyle=":")
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
    _time_axis(prob_ax)
    prob_ax.set_xlabel("time (UTC); black: cutover start, orange: external event")
    return _save(figure, path)


def plot_cutovers(history: ProtectionHistory, path: Path, *, last: int = 4) -> Path:
    """The last ``last`` cutovers: each activity's span, and the steps inside ``switch_over``
    laid end to end with their durations."""
    cutovers = history.cutovers[-last:]
    figure, axes = plt.subplots(max(1, len(cutovers)), 1,
                                figsize=(10, 2.2 + 2.2 * max(1, len(cutovers))), squeeze=False)
    figure.suptitle(f"{history.instance_id}: cutover timeline")
    if not cutovers:
        _empty(axes[0][0], "no cutover in the history")
        return _save(figure, path)
    for ax, cutover in zip((row[0] for row in axes), cutovers, strict=False):
        _timeline(ax, cutover)
    return _save(figure, path)


def _timeline(ax: Any, cutover: CutoverTimeline) -> None:
    labels: list[str] = []
    for row, span in enumerate(cutover.activities):
        width_ms = max((span.end_s - span.start_s) * 1000, 0.5)
        colour = "tab:blue" if span.completed else "tab:red"
        ax.barh(row, width_ms, left=span.start_s * 1000, color=colour, alpha=0.6)
        ax.text(span.start_s * 1000 + width_ms, row, f" {width_ms:.0f} ms", va="center",
                fontsize="small")
        labels.append(span.name + (f" (x{span.attempts})" if span.attempts > 1 else ""))
        if span.name == "switch_over" and cutover.step_ms:
            # The steps measured inside the activity, end to end from its start; named in
            # the legend because the short ones are too thin to label.
            left = span.start_s * 1000
            for step, ms in _in_step_order(cutover.step_ms):
                ax.barh(row + 0.3, max(ms, 0.5), left=left, height=0.3, edgecolor="black",
                        label=f"{step} {ms:.1f} ms")
                left += ms
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small",
                      title="inside switch_over", title_fontsize="x-small")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    critical = "-" if cutover.critical_path_ms is None else f"{cutover.critical_path_ms:.0f} ms"
    started = _dates([cutover.started_at])[0].strftime("%Y-%m-%d %H:%M:%S UTC")
    ax.set_title(f"{started}: {cutover.outcome}, critical path {critical}", fontsize="medium")
    ax.set_xlabel("ms since the cutover started")
    ax.grid(axis="x", alpha=0.3)


def _in_step_order(step_ms: dict[str, float]) -> list[tuple[str, float]]:
    """The critical-path steps in the order the saga runs them (the result's dict arrives
    with its keys sorted); ``verify`` runs after ``switch_over`` and is left out."""
    order = [*EMERGENCY_STEPS[:2], *PLANNED_STEPS]
    known = [(step, step_ms[step]) for step in order if step in step_ms]
    return known + [(s, ms) for s, ms in step_ms.items() if s not in order and s != "verify"]


def plot_lag(history: ProtectionHistory, path: Path) -> Path:
    """Replication lag (bytes) at each status the workflow recorded."""
    figure, ax = plt.subplots(figsize=(10, 3.5))
    ax.set_title(f"{history.instance_id}: replication lag recorded by the workflow")
    if not history.lag:
        _empty(ax, "no replication status in the history yet")
        return _save(figure, path)
    times = mdates.date2num(_dates([p.at for p in history.lag]))
    ax.plot(times, [p.lag_bytes for p in history.lag], marker="o", drawstyle="steps-post")
    ax.set_ylabel("lag (bytes)")
    _time_axis(ax)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def write_report(history: ProtectionHistory, folder: Path) -> list[Path]:
    """All three charts and ``report.json`` (the plotted series) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / REPORT_JSON
    data.write_text(json.dumps(asdict(history), indent=2, sort_keys=True) + "\n")
    return [plot_readiness(history, folder / READINESS_PNG),
            plot_cutovers(history, folder / CUTOVERS_PNG),
            plot_lag(history, folder / LAG_PNG), data]


def write_fleet(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """``fleet.png`` (latest readiness score per instance against its threshold, coloured by
    phase) and ``fleet.json`` (the rows drawn)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / FLEET_JSON
    data.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    figure, ax = plt.subplots(figsize=(10, 1.5 + 0.45 * max(1, len(rows))))
    ax.set_title(f"ShadowShift fleet: {len(rows)} protections")
    if not rows:
        _empty(ax, "no protections")
        return [_save(figure, folder / FLEET_PNG), data]
    names = [str(r["instance_id"]) for r in rows]
    bands = [float(r["readiness_score"] or 0.0) for r in rows]
    colours = [_PHASE_COLOURS.get(str(r["phase"]), "tab:gray") for r in rows]
    ax.barh(names, bands, color=colours)
    for row, r in enumerate(rows):
        if r.get("threshold") is not None:
            ax.plot([r["threshold"]] * 2, [row - 0.4, row + 0.4], color="black")
        ax.text(bands[row], row, f" {r['phase']}, tier {r['tier']}, {r['cutovers']} cutovers",
                va="center", fontsize="small")
    ax.set_xlim(0, 130)
    ax.set_xlabel("latest readiness score (none yet: 0); black tick: threshold")
    ax.invert_yaxis()
    return [_save(figure, folder / FLEET_PNG), data]
