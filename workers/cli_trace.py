"""``shadowshift score-trace``: score a metric trace row by row, causally.

Writes ``timestamp,failure_probability,readiness_score,decision``, one row per input row, in
order. The model libraries load only when this subcommand runs (LightGBM and scikit-learn
take seconds to import, which every other subcommand would pay for nothing).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from contracts.policy import Policy
from models.readiness import PROFILES
from models.trace import CLI_METRICS, Trace, TraceError, load_trace
from workers.cli_base import Subcommand, UsageError

if TYPE_CHECKING:
    from models.scoring import SeriesScores

def _add_score_trace_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE.csv", help="trace to score")
    parser.add_argument("--time-column", default="timestamp",
                        help="name of the time column (default: timestamp)")
    parser.add_argument("--value-column", action="append", dest="value_columns",
                        metavar="COLUMN", help="value column; repeat for several "
                        "(default: value)")
    parser.add_argument("--metric", action="append", dest="metrics", choices=list(CLI_METRICS),
                        help="what the matching --value-column measures (default: other)")
    parser.add_argument("--output", type=Path, metavar="OUT.csv",
                        help="write the scores here instead of stdout")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="also draw a chart")
    parser.add_argument("--model", type=Path, default=None,
                        help="LightGBM model file (its metadata JSON sits beside it; "
                        "default: the bundled model)")
    parser.add_argument("--profile", choices=PROFILES, default="default",
                        help="readiness score profile (default: default)")
    parser.add_argument("--threshold", type=float, default=Policy().threshold,
                        help="readiness score that counts as high")


def _column_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    columns: list[str] = args.value_columns or ["value"]
    metrics: list[str] = args.metrics or []
    if not metrics and len(columns) > 1:
        raise UsageError("several --value-column need one --metric each (the model has one "
                         "slot per metric)")
    if not metrics:
        metrics = ["other"]
    if len(metrics) != len(columns):
        raise UsageError(
            f"{len(columns)} --value-column but {len(metrics)} --metric; give one --metric per "
            "--value-column, or none"
        )
    return [(column, CLI_METRICS[metric]) for column, metric in zip(columns, metrics, strict=True)]


def _run_score_trace(args: argparse.Namespace) -> int:
    from models.predictor import DEFAULT_MODEL_PATH, ModelError, Predictor
    from models.scoring import score_series

    try:
        policy = Policy(threshold=args.threshold)
    except ValueError as err:
        raise UsageError(str(err)) from err
    try:
        trace = load_trace(args.file, args.time_column, _column_pairs(args))
        predictor = Predictor.load(args.model or DEFAULT_MODEL_PATH)
    except (TraceError, ModelError) as err:
        raise UsageError(str(err)) from err
    scores = score_series(trace.times, trace.values, predictor, profile=args.profile,
                          policy=policy)
    if args.output:
        with args.output.open("w", newline="") as out:
            _write_scores(out, trace, scores)
    else:
        _write_scores(sys.stdout, trace, scores)
    if args.plot:
        from models.plot import plot_trace  # matplotlib is slow to import; only on demand

        plot_trace(args.plot, trace, scores, policy.threshold)
    if not args.output:
        print(_summary(trace, scores), file=sys.stderr)
    return 0


def _write_scores(out: TextIO, trace: Trace, scores: SeriesScores) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "failure_probability", "readiness_score", "decision"])
    for stamp, probability, score, decision in zip(
        trace.timestamps, scores.failure_probability.tolist(), scores.readiness_score.tolist(),
        scores.decisions, strict=True,
    ):
        writer.writerow([stamp, f"{probability:.6f}", f"{score:.3f}", decision.action])


def _summary(trace: Trace, scores: SeriesScores) -> str:
    actions = [d.action for d in scores.decisions]
    episodes = sum(1 for i, a in enumerate(actions)
                   if a == "migrate" and (i == 0 or actions[i - 1] != "migrate"))
    first = next((trace.timestamps[i] for i, a in enumerate(actions) if a == "migrate"), "never")
    ignored = sum(trace.ignored.values())
    return (f"shadowshift score-trace: {len(actions)} rows, {ignored} values ignored, "
            f"{episodes} migrate episodes, first migrate: {first}")


SUBCOMMANDS = [
    Subcommand("score-trace", "score a metric trace (CSV) row by row, causally",
               _add_score_trace_arguments, _run_score_trace),
]
