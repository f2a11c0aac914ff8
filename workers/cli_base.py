"""What every ``shadowshift`` subcommand shares: exit codes, errors, the Temporal connection,
output for people (``stderr`` progress, tables) and for scripts (``--json`` on ``stdout``).

Exit codes (docs/cli.md lists them too):

====  =====================================================================================
0     success
1     the operation ran and failed (a workflow failed, a cutover was compensated...)
2     bad input: arguments, a malformed or invalid spec file (names the line and the field)
3     Temporal is unreachable at the given address or namespace
4     unknown instance: no protection with that instance id
5     refused by the protection (paused, no healthy shadow, cooldown...): the reason is printed
6     timed out waiting (the request was recorded; the message says what to check)
130   interrupted (Ctrl-C)
====  =====================================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts.spec import protection_workflow_id
from workers.settings import SettingsError, load_settings

PROG = "shadowshift"

OK, FAILED, BAD_INPUT, UNREACHABLE, NOT_FOUND, REFUSED, TIMED_OUT = 0, 1, 2, 3, 4, 5, 6
INTERRUPTED = 130


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


class CliError(Exception):
    """An error printed as one line; ``exit_code`` is one of the module's codes."""

    exit_code = FAILED

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CliError):
    """Bad arguments or input (exit code 2)."""

    exit_code = BAD_INPUT


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--address``, ``--namespace``, ``--json`` and ``--connect-timeout``."""
    parser.add_argument("--address", help="Temporal frontend host:port "
                        "(default: SHADOWSHIFT_TEMPORAL_ADDRESS or localhost:7233)")
    parser.add_argument("--namespace", help="Temporal namespace "
                        "(default: SHADOWSHIFT_NAMESPACE or default)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="give up connecting to Temporal after this long (default: 10)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout instead of text")


async def connect(args: argparse.Namespace) -> Client:
    """A client for ``--address``/``--namespace`` (defaults from the worker's settings), with
    the payload keys and the TLS (``SHADOWSHIFT_TEMPORAL_TLS_*``) of the environment.

    Raises:
        UsageError: unusable settings, keys or certificates (exit code 2).
        CliError: unreachable within ``--connect-timeout`` (exit code 3), or the TLS
            handshake failed (exit code 2; the message says which setting to change).
    """
    # cryptography: only when connecting
    from workers.payload_codec import data_converter
    from workers.temporal_tls import tls_config, tls_problem

    try:
        settings = load_settings(worker=False)  # a client: the worker's files may be elsewhere
        converter = data_converter(settings)
        tls = tls_config(settings)
    except SettingsError as err:
        raise UsageError(str(err)) from err
    address = args.address or settings.temporal_address
    namespace = args.namespace or settings.namespace
    try:
        async with asyncio.timeout(args.connect_timeout):
            client = await Client.connect(address, namespace=namespace,
                                          data_converter=converter, tls=tls)
            # Connecting succeeds lazily for some failures; one cheap call proves the namespace.
            await client.workflow_service.get_system_info(_system_info_request())
            return client
    except (TimeoutError, RuntimeError, RPCError) as err:
        problem = tls_problem(err, settings, address)
        if problem:
            raise UsageError(f"cannot connect to Temporal at {address}: {problem}") from err
        detail = "no answer" if isinstance(err, TimeoutError) else _first_line(str(err))
        raise CliError(
            f"cannot reach Temporal at {address} (namespace {namespace}): {detail}; "
            "check --address / SHADOWSHIFT_TEMPORAL_ADDRESS and that the server is running",
            UNREACHABLE,
        ) from err


def _system_info_request() -> Any:
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    return GetSystemInfoRequest()


def _first_line(text: str) -> str:
    """A short reason: the OS message buried in a transport error, else the first line."""
    buried = re.search(r'message: "([^"]+)"', text)
    if buried:
        return buried.group(1).lower()
    return text.strip().splitlines()[0] if text.strip() else "error"


def settings_task_queue() -> str:
    """The worker's task queue from the environment (``SHADOWSHIFT_TASK_QUEUE``)."""
    try:
        return load_settings(worker=False).task_queue
    except SettingsError as err:
        raise UsageError(str(err)) from err


async def existing_protection(
    client: Client, instance_id: str
) -> tuple[WorkflowHandle[Any, Any], WorkflowExecutionDescription]:
    """The latest run of ``instance_id``'s protection and its description.

    Raises:
        CliError: no protection has ever existed for it (exit code 4).
    """
    handle = client.get_workflow_handle(protection_workflow_id(instance_id))
    try:
        return handle, await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CliError(
                f"unknown instance {instance_id!r}: no protection (workflow {handle.id}) "
                f"in this namespace; `{PROG} status` lists them",
                NOT_FOUND,
            ) from err
        raise


async def running_protection(
    client: Client, instance_id: str
) -> tuple[WorkflowHandle[Any, Any], WorkflowExecutionDescription]:
    """The running protection of ``instance_id`` and its description.

    Raises:
        CliError: unknown, or its protection has ended (exit code 4).
    """
    handle, description = await existing_protection(client, instance_id)
    if description.status != WorkflowExecutionStatus.RUNNING:
        status = description.status.name if description.status else "?"
        raise CliError(f"{instance_id} is not protected (its protection is {status}); "
                       f"`{PROG} protect SPEC.yaml` protects it again", NOT_FOUND)
    return handle, description


def run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run a subcommand's coroutine; Temporal's RPC errors become one line."""
    try:
        return asyncio.run(coroutine)
    except RPCError as err:
        raise CliError(f"Temporal refused the call: {_first_line(err.message)}") from err


def to_jsonable(value: Any) -> Any:
    """Dataclasses (nested) as dicts, for ``--json``."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    json.dump(to_jsonable(document), sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def say(message: str) -> None:
    """Progress for the person watching (stderr, so stdout stays clean for scripts)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def formatted(value: object, template: str) -> str:
    """``value`` through ``template``, or ``-`` when it is ``None`` (unknown)."""
    return "-" if value is None else template.format(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (no dependency needed for a few columns)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    return "\n".join(lines)
