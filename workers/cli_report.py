"""``shadowshift report INSTANCE`` and ``shadowshift report --fleet``: charts from history.

The per-instance report reads the protection's event history (see
:mod:`workers.report_history`) and writes ``readiness.png``, ``cutovers.png``, ``lag.png`` and
``report.json`` (the plotted series). The fleet report lists every protection and writes
``fleet.png`` and ``fleet.json`` with each one's latest score, threshold, lag and cutovers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from temporalio.client import Client

from contracts.spec import protection_workflow_id
from workers.cli_base import (
    OK,
    Subcommand,
    UsageError,
    add_connection_arguments,
    connect,
    existing_protection,
    formatted,
    print_json,
    run_async,
    say,
    table,
)
from workers.cli_control import list_protections
from workers.report_history import ProtectionHistory, read_history


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instance", nargs="?", help="instance id (or --fleet)")
    parser.add_argument("--fleet", action="store_true", help="summarise every protection")
    parser.add_argument("--all", action="store_true",
                        help="with --fleet: include ended protections")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for the files (default: ./shadowshift-report/INSTANCE "
                        "or ./shadowshift-report/fleet)")
    parser.add_argument("--runs", type=int, default=20, metavar="N",
                        help="follow continue-as-new back over at most N runs (default: 20)")
    add_connection_arguments(parser)


def _run_report(args: argparse.Namespace) -> int:
    if args.fleet == bool(args.instance):
        raise UsageError("give either an instance id or --fleet")
    if args.runs < 1:
        raise UsageError(f"--runs {args.runs}: give 1 or more")
    return run_async(_fleet(args) if args.fleet else _instance(args))


async def _instance(args: argparse.Namespace) -> int:
    from workers.report_plot import write_report  # matplotlib loads only when drawing

    client = await connect(args)
    await existing_protection(client, args.instance)
    history = await read_history(client, args.instance, protection_workflow_id(args.instance),
                                 max_runs=args.runs)
    folder = args.out or Path("shadowshift-report") / args.instance
    files = write_report(history, folder)
    if args.json:
        print_json({"instance_id": args.instance, "files": [str(f) for f in files],
                    "risk_reports": len(history.risk), "lag_samples": len(history.lag),
                    "cutovers": len(history.cutovers), "runs": len(history.run_ids)})
    else:
        say(f"{args.instance}: {len(history.risk)} risk reports, {len(history.lag)} lag "
            f"samples, {len(history.cutovers)} cutovers over {len(history.run_ids)} runs.")
        for path in files:
            print(path)
    return OK


async def fleet_rows(client: Client, *, include_ended: bool, runs: int) -> list[dict[str, Any]]:
    """Each protection's latest score, probability, threshold, lag and cutover count."""
    rows = []
    for row in await list_protections(client, include_ended=include_ended):
        history = await read_history(client, str(row["instance_id"]), row["workflow_id"],
                                     max_runs=runs)
        rows.append({**row, **_latest(history)})
    return rows


def _latest(history: ProtectionHistory) -> dict[str, Any]:
    risk = history.risk[-1] if history.risk else None
    return {
        "readiness_score": risk.readiness_score if risk else None,
        "failure_probability": risk.failure_probability if risk else None,
        "threshold": history.thresholds[-1].threshold if history.thresholds else None,
        "lag_bytes": history.lag[-1].lag_bytes if history.lag else None,
        "cutovers": len(history.cutovers),
    }


async def _fleet(args: argparse.Namespace) -> int:
    from workers.report_plot import write_fleet

    client = await connect(args)
    rows = await fleet_rows(client, include_ended=args.all, runs=args.runs)
    files = write_fleet(rows, args.out or Path("shadowshift-report") / "fleet")
    if args.json:
        print_json({"protections": rows, "files": [str(f) for f in files]})
        return OK
    print(table(
        ["INSTANCE", "TIER", "PHASE", "SCORE", "THRESHOLD", "PROBABILITY", "LAG", "CUTOVERS"],
        [[r["instance_id"], r["tier"], r["phase"], formatted(r["readiness_score"], "{:.1f}"),
          formatted(r["threshold"], "{:g}"), formatted(r["failure_probability"], "{:.3f}"),
          r["lag_bytes"], r["cutovers"]] for r in rows],
    ))
    for path in files:
        print(path)
    return OK


SUBCOMMANDS = [
    Subcommand("report", "charts of an instance's score, cutovers and lag (or --fleet)",
               _add_report_arguments, _run_report),
]
