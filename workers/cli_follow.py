"""Watching a protection from the CLI: follow its phase, send updates with a deadline.

The phase is read from the workflow's ``ShadowShiftPhase`` search attribute through
``describe`` rather than the ``status`` query: ``describe`` is answered by the server, so the
progress display works even while every worker slot is busy provisioning.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError

from contracts import search_attributes
from workers.cli_base import FAILED, REFUSED, TIMED_OUT, CliError, say

POLL_S = 0.5


async def follow_phase(
    handle: WorkflowHandle[Any, Any], until: set[str], *, timeout_s: float, quiet: bool,
    until_closed: bool = False,
) -> str:
    """Print each phase change until the phase is in ``until`` (or, with ``until_closed``,
    until the workflow completes); return the last phase.

    Raises:
        CliError: the workflow ended otherwise (exit 1) or ``timeout_s`` passed (exit 6).
    """
    started = time.monotonic()
    phase, seen_failures = "", set()
    while True:
        description = await handle.describe()
        current = description.typed_search_attributes.get(search_attributes.PHASE) or "?"
        if current != phase:
            phase = current
            if not quiet:
                say(f"{handle.id}: {phase} (after {time.monotonic() - started:.1f} s)")
        for pending in description.raw_description.pending_activities:
            failure = pending.last_failure.message
            if pending.attempt > 1 and failure and failure not in seen_failures:
                seen_failures.add(failure)
                say(f"{pending.activity_type.name} attempt {pending.attempt}: {failure}")
        status = description.status
        if status == WorkflowExecutionStatus.COMPLETED and until_closed:
            return phase
        if status != WorkflowExecutionStatus.RUNNING:
            reason = await _failure(handle)
            raise CliError(f"{handle.id} ended ({status.name if status else '?'}) in phase "
                           f"{phase}: {reason}", FAILED)
        if phase in until and not until_closed:
            return phase
        if time.monotonic() - started > timeout_s:
            raise CliError(
                f"{handle.id} still in phase {phase} after {timeout_s:.0f} s; it keeps going "
                f"(check a worker polls task queue {description.task_queue}, then "
                f"`shadowshift status {handle.id.removeprefix('protect-')}`)",
                TIMED_OUT,
            )
        await asyncio.sleep(POLL_S)


async def _failure(handle: WorkflowHandle[Any, Any]) -> str:
    try:
        await handle.result(follow_runs=False)
    except Exception as err:  # the workflow's own failure, whatever its type
        cause = getattr(err, "cause", None)
        return str(cause or err) or type(err).__name__
    return "completed"


async def send_update(
    handle: WorkflowHandle[Any, Any], update: Any, argument: Any, *, timeout_s: float,
    task_queue: str,
) -> Any:
    """Execute ``update``; a validator's refusal becomes exit code 5 with its reason.

    Raises:
        CliError: refused (exit 5) or no worker answered within ``timeout_s`` (exit 6).
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await handle.execute_update(update, argument)
    except WorkflowUpdateFailedError as err:
        raise CliError(f"refused by {handle.id}: {err.cause or err}", REFUSED) from err
    except TimeoutError as err:
        raise CliError(
            f"no worker answered within {timeout_s:.0f} s: is a worker polling task queue "
            f"{task_queue}?", TIMED_OUT,
        ) from err
