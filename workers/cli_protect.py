"""``shadowshift protect SPEC.yaml`` and ``shadowshift unprotect INSTANCE``.

``protect`` starts the instance's protection or joins the one already running (never two per
instance) and follows its phase until it is protected, unless ``--no-wait``. ``unprotect``
asks the protection to destroy its shadow and end, then waits for the workflow to complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from contracts.protection import MEMO_SPEC, ProtectionApi, UnprotectRequest
from contracts.spec import ProtectionSpec, spec_from_dict, spec_to_dict
from workers.cli_base import (
    OK,
    REFUSED,
    CliError,
    Subcommand,
    add_connection_arguments,
    connect,
    print_json,
    run_async,
    running_protection,
    say,
    settings_task_queue,
)
from workers.cli_follow import follow_phase, send_update
from workers.cli_spec import load_spec_file
from workers.protect import start_protection
from workflows.shadow_on_demand import UNSHADOWED


def _add_protect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, metavar="SPEC.yaml", help="what to protect (YAML)")
    parser.add_argument("--task-queue", help="the workers' task queue "
                        "(default: SHADOWSHIFT_TASK_QUEUE or shadowshift)")
    parser.add_argument("--no-wait", action="store_true",
                        help="return once started instead of following it until protected")
    parser.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                        help="stop following after this long (exit 6; it keeps going)")
    add_connection_arguments(parser)


def _run_protect(args: argparse.Namespace) -> int:
    spec = load_spec_file(args.spec)  # bad input is reported before any connection
    return run_async(_protect(args, spec))


async def _protect(args: argparse.Namespace, spec: ProtectionSpec) -> int:
    client = await connect(args)
    task_queue = args.task_queue or settings_task_queue()
    joined = False
    try:
        running = await client.get_workflow_handle(spec.workflow_id).describe()
        if running.status == WorkflowExecutionStatus.RUNNING:
            joined = True
            current = await running.memo_value(MEMO_SPEC, default=None)
            differ = (
                _differences(running_spec(current), spec_to_dict(spec)) if current else []
            )
            if differ:
                raise CliError(
                    f"{spec.instance_id} is already protected with a different spec "
                    f"({', '.join(differ)}); nothing changed. To change it: `shadowshift "
                    f"unprotect {spec.instance_id}`, then protect again (the policy alone: "
                    "the set_policy update)",
                    REFUSED,
                )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    handle = await start_protection(client, spec, task_queue=task_queue)
    if not args.json:
        verb = "Joined the running" if joined else "Started"
        say(f"{verb} protection of {spec.instance_id} (workflow {handle.id}, "
            f"task queue {task_queue}).")
    phase = "provisioning"
    if not args.no_wait:
        # Without a standing shadow the protection watches unshadowed until the risk rises.
        phase = await follow_phase(handle, {"protected", UNSHADOWED}, timeout_s=args.timeout,
                                   quiet=args.json)
    if args.json:
        print_json({"instance_id": spec.instance_id, "workflow_id": handle.id,
                    "joined": joined, "phase": phase, "waited": not args.no_wait})
    elif phase == UNSHADOWED:
        say(f"{spec.instance_id} is protected without a standing shadow (phase {UNSHADOWED}): "
            "a shadow is provisioned when its risk rises.")
    elif not args.no_wait:
        say(f"{spec.instance_id} is protected.")
    return OK


def running_spec(memo: dict[str, Any]) -> dict[str, Any]:
    """The running protection's spec from its memo, read through the spec's own loader so a
    field added since it started reads as its default (an upgrade must not make a join look
    like a change); fields the spec no longer has are dropped."""
    if not isinstance(memo, dict):
        return {}
    spec = spec_from_dict(memo, strict=False)
    spec.decode_errors = []  # fields it no longer has
    return spec_to_dict(spec)


def _differences(running: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ, e.g. ``policy.threshold 60 -> 70``."""
    found = []
    for name in [*wanted, *(n for n in running if n not in wanted)]:
        value = wanted.get(name)
        if isinstance(value, dict) and isinstance(running.get(name) or {}, dict):
            found += _differences(running.get(name) or {}, value, f"{prefix}{name}.")
        elif running.get(name) != value:
            found.append(f"{prefix}{name} {running.get(name)!r} -> {value!r}")
    return found


def _add_unprotect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instance", help="instance id")
    parser.add_argument("--reason", default="operator request", help="why, for the record")
    parser.add_argument("--no-wait", action="store_true",
                        help="return once accepted instead of waiting for the shadow's removal")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="stop waiting after this long (exit 6)")
    add_connection_arguments(parser)


def _run_unprotect(args: argparse.Namespace) -> int:
    return run_async(_unprotect(args))


async def _unprotect(args: argparse.Namespace) -> int:
    client = await connect(args)
    handle, description = await running_protection(client, args.instance)
    await send_update(handle, ProtectionApi.unprotect,
                      UnprotectRequest(args.reason), timeout_s=min(args.timeout, 60.0),
                      task_queue=description.task_queue)
    phase = "unprotecting"
    if not args.no_wait:
        phase = await follow_phase(handle, set(), timeout_s=args.timeout, quiet=args.json,
                                   until_closed=True)
    if args.json:
        print_json({"instance_id": args.instance, "workflow_id": handle.id, "phase": phase})
    elif not args.no_wait:
        say(f"{args.instance} is no longer protected; its shadow was destroyed.")
    return OK


SUBCOMMANDS = [
    Subcommand("protect", "start (or join) the protection of the instance a YAML spec names",
               _add_protect_arguments, _run_protect),
    Subcommand("unprotect", "end an instance's protection and destroy its shadow",
               _add_unprotect_arguments, _run_unprotect),
]
