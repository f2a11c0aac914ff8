"""Routing a platform's agent tasks to the queue of the host that must run them.

The platform (an activity on the control worker) decides what a node agent should do and
returns an :class:`~contracts.agent_tasks.AgentTask`; this module runs it on
``host_task_queue(task.host)`` with the timeouts ``contracts.agent`` documents. An agent that
does not pick a task up in time is a failure of its own (``AgentDown``, not retried here):
the message says which host's agent to start. Workflow code: deterministic, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.api.enums.v1 import TimeoutType
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from contracts.agent import (
    AGENT_DOWN,
    AGENT_HEARTBEAT_S,
    AGENT_PICKUP_S,
    PROBE_ANSWER_S,
    PROBE_PICKUP_S,
    VERSION_MISMATCH,
    AgentActivities,
    host_task_queue,
)
from contracts.agent_tasks import AgentTask, LocalView
from contracts.errors import NON_RETRYABLE_TYPES
from contracts.shadow import NodeFacts

A = TypeVar("A")
T = TypeVar("T")

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[*NON_RETRYABLE_TYPES, VERSION_MISMATCH],
)
"""Agent tasks are idempotent: a crash halfway is retried, a refusal is not."""


async def run_agent_task(task: AgentTask) -> object:
    """Run ``task`` on its host's agent; its result (``ServerInfo``, ``NodeFacts``, a line,
    ``bool`` or ``LocalView``).

    Raises:
        ApplicationError: ``AgentDown`` when the agent did not pick the task up in time,
            non-retryable.
        ActivityError: the task itself failed for good.
    """
    if task.seed is not None:
        return await _run(task, AgentActivities.seed_standby, task.seed, long=True,
                          pickup_s=task.pickup_s or AGENT_PICKUP_S)
    if task.rewind is not None:
        return await _run(task, AgentActivities.rewind_as_standby, task.rewind, long=True)
    if task.inspect is not None:
        return await _run(task, AgentActivities.inspect_server, task.inspect)
    if task.destroy is not None:
        return await _run(task, AgentActivities.destroy_server, task.destroy, long=True)
    if task.fence is not None:
        return await _run(task, AgentActivities.fence_server, task.fence)
    if task.probe is not None:
        return await probe(task)
    if task.ensure_primary is not None:
        return await _run(task, AgentActivities.ensure_primary, task.ensure_primary, long=True)
    if task.hello is not None:
        return await _run(task, AgentActivities.hello, task.hello)
    raise ApplicationError(f"empty agent task for {task.host}", non_retryable=True)


async def inspect(task: AgentTask) -> NodeFacts:
    """Run an ``inspect`` task: the facts as the node's agent sees them."""
    assert task.inspect is not None
    return await _run(task, AgentActivities.inspect_server, task.inspect)


async def probe(task: AgentTask) -> LocalView:
    """Run a ``probe`` task: the failure detector's agent vote, with the short pickup
    timeout and no retry (a late answer is no answer)."""
    assert task.probe is not None
    return await _run(task, AgentActivities.probe_local, task.probe,
                      pickup_s=PROBE_PICKUP_S, answer_s=PROBE_ANSWER_S, attempts=1)


async def agent_vote(task: AgentTask) -> tuple[bool, str]:
    """Whether the agent of a suspected primary's host agrees it is down, and what it saw.
    An agent that does not answer in time votes *down*: a dead or frozen host cannot answer,
    and a host whose agent is cut off from the control plane cannot keep its lease either."""
    try:
        view = await probe(task)
    except (ActivityError, ApplicationError) as err:
        cause = err.cause if isinstance(err, ActivityError) and err.cause else err
        return True, f"its agent did not answer ({cause})"
    if view.answers and view.writable:
        return False, f"its agent sees {view.node} answer and take writes"
    return True, f"its agent sees {view.node} {view.detail or 'not answering'}"


async def _run(task: AgentTask, method: Callable[[AgentActivities, A], T], arg: A, *,
               long: bool = False, pickup_s: float = AGENT_PICKUP_S,
               answer_s: float | None = None, attempts: int | None = None) -> T:
    retry = _RETRY if attempts is None else RetryPolicy(maximum_attempts=attempts)
    options: dict[str, Any] = {
        "task_queue": host_task_queue(task.host),
        "schedule_to_start_timeout": timedelta(seconds=pickup_s),
        "start_to_close_timeout": (timedelta(seconds=answer_s) if answer_s is not None
                                   else timedelta(hours=6 if long else 0.05)),
        "retry_policy": retry,
        "summary": task.what(),
    }
    if long:
        options["heartbeat_timeout"] = timedelta(seconds=AGENT_HEARTBEAT_S)
    try:
        return await workflow.execute_activity_method(method, arg, **options)
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, TimeoutError) and \
                cause.type == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START:
            raise ApplicationError(
                f"the agent of host {task.host} did not take '{task.what()}' within "
                f"{pickup_s:g} s: is `shadowshift agent --host {task.host}` running there?",
                type=AGENT_DOWN, non_retryable=True) from err
        raise
