"""``shadowshift``: the command-line entry point (also ``python -m workers.cli``).

Each subcommand registers itself in :data:`SUBCOMMANDS` with a function that adds its
arguments and a function that runs it, so more (``protect``, ``status``, ``cutover``...) can
be added without touching the others. Exit codes: 0 success, 2 bad input (usage errors,
unusable files), 1 anything else.

``score-trace`` scores a metric trace row by row, causally, and writes
``timestamp,failure_probability,readiness_score,decision``, one row per input row, in order.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from models.policy import PolicyConfig
from models.predictor import DEFAULT_MODEL_PATH, ModelError, Predictor
from models.readiness import PROFILES
from models.scoring import SeriesScores, score_series
from models.trace import CLI_METRICS, Trace, TraceError, load_trace

PROG = "shadowshift"


@dataclass(frozen=True)
class Subcommand:
    """One ``shadowshift`` subcommand."""

    name: str
    """What the user types."""
    help: str
    """One line for ``--help``."""
    add_arguments: Callable[[argparse.ArgumentParser], None]
    """Declares its arguments."""
    run: Callable[[argparse.Namespace], int]
    """Runs it; returns the exit code."""


class UsageError(Exception):
    """Bad arguments or input; printed as one line, exit code 2."""


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
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH,
                        help="LightGBM model file (its metadata JSON sits beside it)")
    parser.add_argument("--profile", choices=PROFILES, default="default",
                        help="readiness score profile (default: default)")
    parser.add_argument("--threshold", type=float, default=PolicyConfig().threshold,
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
    try:
        policy = PolicyConfig(threshold=args.threshold)
    except ValueError as err:
        raise UsageError(str(err)) from err
    trace = load_trace(args.file, args.time_column, _column_pairs(args))
    predictor = Predictor.load(args.model)
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
    return (f"{PROG} score-trace: {len(actions)} rows, {ignored} values ignored, "
            f"{episodes} migrate episodes, first migrate: {first}")


SUBCOMMANDS: list[Subcommand] = [
    Subcommand("score-trace", "score a metric trace (CSV) row by row, causally",
               _add_score_trace_arguments, _run_score_trace),
]
"""Every subcommand; append to add one."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so :func:`main` prints one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``shadowshift`` parser with every subcommand in :data:`SUBCOMMANDS`."""
    parser = _Parser(prog=PROG, description="ShadowShift: predictive failover.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    for command in SUBCOMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``shadowshift`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
        return code
    except (UsageError, TraceError, ModelError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `shadowshift score-trace x.csv | head` is fine; the reader left early.
        return 0


if __name__ == "__main__":
    sys.exit(main())
