"""``shadowshift status | cutover | pause | resume | demo``: drive running protections.

``status`` without an instance lists every protection from the ShadowShift search attributes
(answered by the server alone, so it works without a worker); with one it asks the
protection's ``status`` query. ``cutover`` sends the validated ``request_cutover`` update and
follows the cutover child workflow to its result. ``pause``/``resume`` are signals, confirmed
by reading the status back.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from contracts import search_attributes as sa
from contracts.cutover import CutoverResult, cutover_workflow_id
from contracts.protection import CutoverRequest, ProtectionApi, ProtectionStatus
from workers.cli_base import (
    FAILED,
    OK,
    TIMED_OUT,
    CliError,
    Subcommand,
    add_connection_arguments,
    connect,
    formatted,
    print_json,
    run_async,
    running_protection,
    say,
    table,
)
from workers.cli_follow import POLL_S, send_update

PROTECTIONS = 'WorkflowType = "InstanceProtectionWorkflow"'


def _add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instance", nargs="?", help="one instance in detail (default: all)")
    parser.add_argument("--all", action="store_true",
                        help="the table includes ended protections too")
    parser.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS",
                        help="how long a worker may take to answer (default: 15)")
    add_connection_arguments(parser)


def _run_status(args: argparse.Namespace) -> int:
    return run_async(_status_one(args) if args.instance else _status_all(args))


async def list_protections(client: Client, *, include_ended: bool) -> list[dict[str, Any]]:
    """One row per protection, from search attributes (no worker needed)."""
    query = PROTECTIONS if include_ended else f'{PROTECTIONS} AND ExecutionStatus = "Running"'
    rows = []
    async for execution in client.list_workflows(query):
        attrs = execution.typed_search_attributes
        rows.append({
            "instance_id": attrs.get(sa.INSTANCE), "platform": attrs.get(sa.PLATFORM),
            "tier": attrs.get(sa.TIER), "phase": attrs.get(sa.PHASE),
            "readiness_band": attrs.get(sa.READINESS),
            "status": execution.status.name if execution.status else None,
            "workflow_id": execution.id, "started": execution.start_time.isoformat(),
        })
    return sorted(rows, key=lambda row: str(row["instance_id"]))


async def _status_all(args: argparse.Namespace) -> int:
    client = await connect(args)
    rows = await list_protections(client, include_ended=args.all)
    if args.json:
        print_json(rows)
        return OK
    if not rows:
        print("no protections" + ("" if args.all else " running (--all shows ended ones)"))
        return OK
    headers = ["INSTANCE", "PLATFORM", "TIER", "PHASE", "READINESS", "STATUS", "STARTED"]
    print(table(headers, [
        [r["instance_id"], r["platform"], r["tier"], r["phase"],
         formatted(r["readiness_band"], "{:.0f}+"),
         r["status"], r["started"][:19].replace("T", " ")] for r in rows
    ]))
    return OK


async def query_status(client: Client, instance_id: str, timeout_s: float) -> ProtectionStatus:
    """The ``status`` query of a running protection.

    Raises:
        CliError: unknown (4), not running (4), or no worker answered in time (6).
    """
    handle, description = await running_protection(client, instance_id)
    try:
        async with asyncio.timeout(timeout_s):
            result: ProtectionStatus = await handle.query(ProtectionApi.status)
            return result
    except TimeoutError as err:
        raise CliError(f"no worker answered the status query within {timeout_s:.0f} s: is a "
                       f"worker polling task queue {description.task_queue}?", TIMED_OUT) from err


async def _status_one(args: argparse.Namespace) -> int:
    client = await connect(args)
    status = await query_status(client, args.instance, args.timeout)
    if args.json:
        print_json(status)
        return OK
    policy = status.policy
    rows = [
        ("phase", status.phase + (" (paused)" if status.paused else "")),
        ("shadow healthy", status.shadow_healthy),
        *([("synchronous", "relaxed: commits do not wait for the lost shadow (RPO > 0)")]
          if status.sync_degraded else []),
        ("readiness score", formatted(status.readiness_score, "{:.1f}")
         + (f" (threshold {policy.threshold:g})" if policy else "")),
        ("failure probability", formatted(status.failure_probability, "{:.3f}")),
        ("replication lag", formatted(status.lag_bytes, "{} bytes")),
        ("cutovers", status.cutovers),
        ("last cutover", _when(status.last_cutover_at)),
        ("next action", status.next_action),
        ("events seen", status.events_seen),
    ]
    print(f"{status.instance_id}")
    print(table(["FIELD", "VALUE"], rows))
    if status.log:
        print("recent decisions:")
        for line in status.log:
            print(f"  {line}")
    return OK


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _add_cutover_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instance", help="instance id")
    parser.add_argument("--force", action="store_true",
                        help="skip the cooldown check (the health checks always run)")
    parser.add_argument("--emergency", action="store_true",
                        help="the primary failed: fence it at the router and move traffic "
                        "without its cooperation (skips the cooldown; while tier 1 is relaxed "
                        "it is refused unless --force accepts the possible loss)")
    parser.add_argument("--reason", default="operator request", help="why, for the record")
    parser.add_argument("--no-wait", action="store_true",
                        help="return once scheduled instead of following the cutover")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="stop following after this long (exit 6)")
    add_connection_arguments(parser)


def _run_cutover(args: argparse.Namespace) -> int:
    return run_async(_cutover(args))


async def _cutover(args: argparse.Namespace) -> int:
    client = await connect(args)
    handle, description = await running_protection(client, args.instance)
    child = client.get_workflow_handle(cutover_workflow_id(args.instance))
    previous_run = await _run_id(child)
    await send_update(handle, ProtectionApi.request_cutover,
                      CutoverRequest(args.reason, args.force, emergency=args.emergency),
                      timeout_s=min(args.timeout, 60),
                      task_queue=description.task_queue)
    if args.no_wait:
        if args.json:
            print_json({"instance_id": args.instance, "cutover": "scheduled"})
        else:
            say(f"Cutover of {args.instance} scheduled.")
        return OK
    if not args.json:
        say(f"Cutover of {args.instance} scheduled; following {child.id}.")
    result = await _follow_cutover(client, child.id, previous_run, args.timeout)
    if args.json:
        print_json(result)
    else:
        steps = ", ".join(f"{step} {ms:.0f} ms" for step, ms in result.step_ms.items())
        say(f"Cutover {result.outcome}: traffic on {result.primary} (was "
            f"{result.former_primary}); critical path {result.critical_path_ms:.0f} ms; "
            f"{steps}. {result.loss_bound}")
    if result.outcome != "completed":
        raise CliError(f"cutover of {args.instance} ended {result.outcome}: {result.detail}")
    return OK


async def _run_id(handle: Any) -> str | None:
    try:
        run_id: str = (await handle.describe()).run_id
        return run_id
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _follow_cutover(
    client: Client, workflow_id: str, previous_run: str | None, timeout_s: float
) -> CutoverResult:
    """Wait for a new run of the cutover child, then its result."""
    try:
        async with asyncio.timeout(timeout_s):
            while (run_id := await _run_id(client.get_workflow_handle(workflow_id))) in (
                None, previous_run,
            ):
                await asyncio.sleep(POLL_S)
            handle = client.get_workflow_handle(workflow_id, run_id=run_id,
                                                result_type=CutoverResult)
            result: CutoverResult = await handle.result(follow_runs=False)
            return result
    except TimeoutError as err:
        raise CliError(f"the cutover did not finish within {timeout_s:.0f} s; it keeps "
                       f"going: `shadowshift status {workflow_id.removeprefix('cutover-')}`",
                       TIMED_OUT) from err
    except WorkflowFailureError as err:
        raise CliError(f"the cutover failed: {err.cause or err}", FAILED) from err


def _add_signal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instance", help="instance id")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for the protection to confirm (default: 30)")
    add_connection_arguments(parser)


def _run_pause(args: argparse.Namespace) -> int:
    return run_async(_pause_or_resume(args, paused=True))


def _run_resume(args: argparse.Namespace) -> int:
    return run_async(_pause_or_resume(args, paused=False))


async def _pause_or_resume(args: argparse.Namespace, *, paused: bool) -> int:
    client = await connect(args)
    handle, _ = await running_protection(client, args.instance)
    signal = ProtectionApi.pause if paused else ProtectionApi.resume
    await handle.signal(signal)
    deadline = time.monotonic() + args.timeout
    while (status := await query_status(client, args.instance, args.timeout)).paused != paused:
        if time.monotonic() > deadline:
            raise CliError("the signal is recorded but the protection has not applied it yet; "
                           f"check with `shadowshift status {args.instance}`", TIMED_OUT)
        await asyncio.sleep(POLL_S)
    word = "paused" if paused else "resumed"
    if args.json:
        print_json({"instance_id": args.instance, "paused": status.paused})
    else:
        say(f"{args.instance} {word}: next action {status.next_action}.")
    return OK


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("demo_args", nargs=argparse.REMAINDER, metavar="...",
                        help="options of the demo (see `python -m workers.demo --help`)")


def _run_demo(args: argparse.Namespace) -> int:
    from workers.demo import main as demo_main  # the demo's own imports are heavy

    code: int = demo_main(list(args.demo_args))
    return code


SUBCOMMANDS = [
    Subcommand("status", "a table of all protections, or one instance in detail",
               _add_status_arguments, _run_status),
    Subcommand("cutover", "move an instance's traffic to its shadow now",
               _add_cutover_arguments, _run_cutover),
    Subcommand("pause", "stop a protection from acting on its own", _add_signal_arguments,
               _run_pause),
    Subcommand("resume", "let a paused protection act again", _add_signal_arguments,
               _run_resume),
    Subcommand("demo", "run the local end-to-end demo (dev server, worker, Web UI)",
               _add_demo_arguments, _run_demo),
]
