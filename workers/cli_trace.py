"""``shadowshift score-trace``: score a metric trace row by row, causally.

Writes ``timestamp,failure_probability,readiness_score,decision``, one row per input row, in
order (``--forecast`` adds a ``forecast`` column: what runs out soonest, e.g. "disk full in
38 min"). Any number of value columns, each with a kind; ``other`` may repeat, and
``--columns m01..m19:other`` names many at once. The instance's own baselines are learned
from the first row, so a long history (ASD's 30 normal days) is its reference.

Messy files are read, not refused (see :mod:`models.trace`): clock steps, duplicate
timestamps, empty or constant columns and gaps are handled and said on stderr, one line
each. A file that cannot be a trace, bad arguments, or a model for other features: one line
on stderr and exit code 2, never a traceback.

The model libraries load only when this subcommand runs (LightGBM and scikit-learn take
seconds to import, which every other subcommand would pay for nothing).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from contracts.policy import Policy
from models.columns import SHORT_KINDS, ColumnSpecError, canonical_kind, parse_columns
from models.readiness import PROFILES
from models.trace import Trace, TraceError, load_trace
from workers.cli_base import Subcommand, UsageError

if TYPE_CHECKING:
    from models.scoring import SeriesScores

PREFIX = "shadowshift score-trace"


def _add_score_trace_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE.csv", help="trace to score")
    parser.add_argument("--time-column", default="timestamp",
                        help="name of the time column (default: timestamp)")
    parser.add_argument("--value-column", action="append", dest="value_columns",
                        metavar="COLUMN", help="value column; repeat for several "
                        "(default: value)")
    parser.add_argument("--metric", action="append", dest="metrics", choices=list(SHORT_KINDS),
                        help="what the matching --value-column measures (default: other; "
                        "other may repeat)")
    parser.add_argument("--columns", metavar="SPEC",
                        help="value columns and kinds at once, e.g. 'm01..m19:other', "
                        "'cpu:cpu,mem:memory', 'm*' (kind defaults to other)")
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
    parser.add_argument("--history", type=float, default=0.0, metavar="RATE",
                        help="the instance's historical failure rate, 0..1 (default: 0)")
    parser.add_argument("--forecast", action="store_true",
                        help="add a 'forecast' column: the resource that runs out soonest")


def _column_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(CSV column, column key)`` pairs from the arguments."""
    if args.columns is not None:
        if args.value_columns or args.metrics:
            raise UsageError("give either --columns or --value-column/--metric, not both")
        try:
            return parse_columns(args.columns, _header(args.file, args.columns))
        except ColumnSpecError as err:
            raise UsageError(str(err)) from err
    columns: list[str] = args.value_columns or ["value"]
    metrics: list[str] = args.metrics or ["other"] * len(columns)
    if len(metrics) != len(columns):
        raise UsageError(
            f"{len(columns)} --value-column but {len(metrics)} --metric; give one --metric per "
            "--value-column, or none (all other)"
        )
    # load_trace labels a kind that repeats with its column's name (other:m01, other:m02).
    return [(column, canonical_kind(metric))
            for column, metric in zip(columns, metrics, strict=True)]


def _header(path: Path, spec: str) -> list[str] | None:
    """The file's header, for ``--columns`` patterns (``None`` when the spec has none)."""
    if not any(ch in spec for ch in "*?["):
        return None
    try:
        with path.open(newline="") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"{path}: cannot read the header ({err})") from None


def _run_score_trace(args: argparse.Namespace) -> int:
    try:
        return _score(args)
    except UsageError:
        raise
    except (TraceError, ValueError, KeyError, IndexError, TypeError, OSError,
            MemoryError) as err:
        # Whatever the file did to us, the user gets one line, not a traceback.
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"{args.file}: cannot score this trace ({text})") from err


def _score(args: argparse.Namespace) -> int:
    from models.predictor import DEFAULT_MODEL_PATH, ModelError, Predictor
    from models.scoring import score_series

    if not 0.0 <= args.history <= 1.0:
        raise UsageError(f"--history must be within 0..1, not {args.history}")
    try:
        policy = Policy(threshold=args.threshold)
    except ValueError as err:
        raise UsageError(str(err)) from err
    pairs = _column_pairs(args)
    try:
        trace = load_trace(args.file, args.time_column, pairs)
        predictor = Predictor.load(args.model or DEFAULT_MODEL_PATH)
    except (TraceError, ModelError) as err:
        raise UsageError(str(err)) from err
    for note in trace.notes:
        print(f"{PREFIX}: {note}", file=sys.stderr)
    scores = score_series(trace.times, trace.values, predictor, profile=args.profile,
                          policy=policy, historical_failure_rate=args.history)
    if args.output:
        with args.output.open("w", newline="") as out:
            _write_scores(out, trace, scores, args.forecast)
    else:
        _write_scores(sys.stdout, trace, scores, args.forecast)
    if args.plot:
        from models.plot import plot_trace  # matplotlib is slow to import; only on demand

        plot_trace(args.plot, trace, scores, policy.threshold)
    if not args.output:
        print(_summary(trace, scores), file=sys.stderr)
    return 0


def _write_scores(out: TextIO, trace: Trace, scores: SeriesScores, forecast: bool) -> None:
    writer = csv.writer(out, lineterminator="\n")
    header = ["timestamp", "failure_probability", "readiness_score", "decision"]
    writer.writerow([*header, "forecast"] if forecast else header)
    for row, (stamp, probability, score, decision) in enumerate(zip(
        trace.timestamps, scores.failure_probability.tolist(), scores.readiness_score.tolist(),
        scores.decisions, strict=True,
    )):
        line = [stamp, f"{probability:.6f}", f"{score:.3f}", decision.action]
        if forecast:
            line.append(scores.forecast_text(row) or "")
        writer.writerow(line)


def _summary(trace: Trace, scores: SeriesScores) -> str:
    actions = [d.action for d in scores.decisions]
    episodes = sum(1 for i, a in enumerate(actions)
                   if a == "migrate" and (i == 0 or actions[i - 1] != "migrate"))
    first = next((trace.timestamps[i] for i, a in enumerate(actions) if a == "migrate"), "never")
    ignored = sum(trace.ignored.values())
    soonest = next((f"; soonest forecast: {text} at {trace.timestamps[i]}"
                    for i in range(len(actions))
                    if (text := scores.forecast_text(i)) is not None), "")
    return (f"{PREFIX}: {len(actions)} rows, {len(trace.values)} columns, {ignored} values "
            f"ignored, {len(trace.clock_steps)} clock steps repaired, {episodes} migrate "
            f"episodes, first migrate: {first}{soonest}")


SUBCOMMANDS = [
    Subcommand("score-trace", "score a metric trace (CSV) row by row, causally",
               _add_score_trace_arguments, _run_score_trace),
]
