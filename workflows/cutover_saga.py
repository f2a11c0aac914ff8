"""Saga plumbing of the cutover workflow: activity calls, shielding, failure reasons.

Deterministic helpers only (the workflow sandbox imports this module): no I/O, no clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from contracts.cutover import NON_RETRYABLE_CUTOVER_TYPES, CutoverActivities

T = TypeVar("T")
A = TypeVar("A")
_START_TO_CLOSE_S: dict[Callable[..., Any], float] = {CutoverActivities.verify_cutover: 240.0}
"""Longer attempts: on AWS, verify waits (heartbeating) for Route 53 to report the shift's
change INSYNC, tens of seconds and up to the platform's 180 s bound."""


async def run_activity(
    activity: Callable[[CutoverActivities, A], T], arg: A, *, task_queue: str, attempts: int,
    summary: str,
) -> T:
    """Run a cutover activity: 60 s per attempt, 3 s heartbeats, quick retries (the critical
    path is short; a lost worker must be noticed in seconds, not minutes)."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        task_queue=task_queue,
        summary=summary,
        start_to_close_timeout=timedelta(seconds=_START_TO_CLOSE_S.get(activity, 60.0)),
        heartbeat_timeout=timedelta(seconds=3),
        retry_policy=RetryPolicy(
            initial_interval=timedelta(milliseconds=200),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=2),
            maximum_attempts=attempts,
            non_retryable_error_types=NON_RETRYABLE_CUTOVER_TYPES,
        ),
    )


async def shielded(awaitable: Awaitable[T]) -> T:
    """Run to completion even if the workflow is cancelled meanwhile, then re-raise."""
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def error_type(err: ActivityError) -> str:
    """The ``ApplicationError`` type behind an activity failure ('' if none)."""
    cause = err.cause
    return cause.type or "" if isinstance(cause, ApplicationError) else ""


def reason(err: BaseException) -> str:
    """One line saying why an activity (or anything else) failed."""
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    return str(cause) or type(cause).__name__
