"""The cutover's critical path (fence → catch up → promote → shift) as platform-neutral steps.

Each step is a plain function of a :class:`~infra.platform.Platform` and the request, so the
same code runs one activity per step or all steps in one activity (``switch_over``). Every
step is idempotent: fencing and weights are absolute, catch-up re-reads positions, promotion
is a no-op on a primary. :func:`run_steps` resumes after the steps a previous attempt
reported finished (heartbeat details) and names them in its failures, so the workflow
compensates exactly those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict

import psycopg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from contracts.cutover import (
    CATCH_UP,
    FENCE_PRIMARY,
    FENCE_ROUTER,
    PROMOTE,
    SHIFT_TRAFFIC,
    STOP_PRIMARY,
    StepOutcome,
    StepRequest,
)
from infra.errors import InfraError, InvalidRequestError
from infra.observability import cutover_step_span
from infra.platform import Platform

StepFunction = Callable[[Platform, StepRequest], str]


def run_steps(platform: Platform, request: StepRequest, steps: list[str]) -> list[StepOutcome]:
    """Run ``steps`` in order inside the current activity, skipping those already finished.

    Raises:
        ApplicationError: the failing step's reason; ``details[0]`` lists the finished steps.
    """
    details = activity.info().heartbeat_details
    done = [StepOutcome(**item) for item in details[0]] if details else []
    finished = {outcome.step for outcome in done}
    # The SDK sends an activity's first heartbeat at once and throttles later ones (80 % of
    # the heartbeat timeout): beating first keeps its server round trip (and the server's
    # work on it) beside the session set-up below, out of the window; the per-step beats
    # reach the server only if the steps outlast the throttle. A retry may then redo
    # finished steps; every step is idempotent, so it converges.
    activity.heartbeat([asdict(outcome) for outcome in done])
    # Open the sessions before the window, not inside it; an emergency's source is presumed
    # dead or hung, and a probe of a hung one would only wait for its deadline.
    warm = [request.plan.target] + ([request.plan.source] if request.plan.mode == "planned"
                                    else [])
    for node in warm:
        platform.probe(node)
    with _beating(done):
        _run_each(platform, request, steps, finished, done)
    return [outcome for outcome in done if outcome.step in steps]


def _beating(done: list[StepOutcome], every_s: float = 1.0) -> AbstractContextManager[None]:
    """Heartbeat the finished steps every ``every_s`` while a step runs: a step that waits on
    a hung node (up to its statement deadline) must not read as a dead worker under the saga's
    3 s heartbeat timeout. The SDK throttles what reaches the server."""
    return heartbeating(lambda: [asdict(outcome) for outcome in list(done)], every_s)


def _run_each(platform: Platform, request: StepRequest, steps: list[str], finished: set[str],
              done: list[StepOutcome]) -> None:
    for step in steps:
        if step in finished:
            continue
        started = time.monotonic()
        if step == PROMOTE:
            _wait_for_the_lease(request, done)
            started = time.monotonic()  # the wait is not the promotion's
        try:
            with cutover_step_span(step, request.plan.instance.instance_id,
                                   {"shadowshift.cutover.mode": request.plan.mode}):
                detail = _STEPS[step](platform, request)
        except ApplicationError as err:
            raise ApplicationError(
                err.message, [o.step for o in done], type=err.type,
                non_retryable=err.non_retryable,
            ) from err
        except NotImplementedError as err:
            raise ApplicationError(
                f"{step}: {err}", [o.step for o in done], type="Unsupported", non_retryable=True
            ) from err
        except (InfraError, psycopg.Error) as err:
            invalid = isinstance(err, InvalidRequestError)
            raise ApplicationError(
                f"{step} failed: {str(err).strip()}", [o.step for o in done],
                type="InvalidRequest" if invalid else "StepFailed", non_retryable=invalid,
            ) from err
        done.append(StepOutcome(step, round((time.monotonic() - started) * 1000, 2), detail,
                                finished_at=time.time()))
        activity.heartbeat([asdict(outcome) for outcome in done])


def _wait_for_the_lease(request: StepRequest, done: list[StepOutcome]) -> None:
    """Emergency on a platform with agents: promote only once the source's agent has fenced
    it, i.e. ``fence_lease_s`` after the source was cut off (``contracts.agent``'s lease
    argument). Cut off = the last of the router fence and the stop, in this attempt or an
    earlier activity (``request.fenced_at``)."""
    if request.plan.mode != "emergency" or request.fence_lease_s <= 0:
        return
    fenced = [o.finished_at for o in done if o.step in (FENCE_ROUTER, STOP_PRIMARY)]
    fenced_at = max([request.fenced_at, *fenced])
    if fenced_at <= 0:
        fenced_at = time.time()  # not recorded (an old attempt): count from now, safely late
    wait_s = fenced_at + request.fence_lease_s - time.time()
    if wait_s > 0:
        activity.logger.info("Waiting %.2f s for the lease of %s to run out before promoting.",
                             wait_s, request.plan.source)
        time.sleep(wait_s)


def _fence_primary(platform: Platform, request: StepRequest) -> str:
    platform.fence(request.plan.source)
    return ""


def _fence_router(platform: Platform, request: StepRequest) -> str:
    platform.fence_router(request.plan.source)
    return ""


def _stop_primary(platform: Platform, request: StepRequest) -> str:
    return platform.stop_node(request.plan.source) or ""


def _catch_up(platform: Platform, request: StepRequest) -> str:
    """Planned: the fenced source's flushed position; emergency: everything received."""
    plan = request.plan
    position = platform.final_position(plan.source) if plan.mode == "planned" else None
    deadline = time.monotonic() + request.catch_up_timeout_s
    next_beat = time.monotonic() + 0.5
    while (gap := platform.replay_gap(plan.target, position)) > 0:
        now = time.monotonic()
        if now > deadline:
            raise ApplicationError(
                f"{plan.target} is still {gap} bytes behind {position or 'what it received'} "
                f"after {request.catch_up_timeout_s}s",
                type="CatchUpTimeout",
                non_retryable=True,
            )
        if now > next_beat:
            activity.heartbeat()
            next_beat = now + 0.5
        time.sleep(0.001)
    return position or "received WAL replayed"


def _promote(platform: Platform, request: StepRequest) -> str:
    source = platform.probe(request.plan.source)
    if source.writable:
        raise ApplicationError(
            f"{request.plan.source} accepts writes again; refusing to promote a second primary",
            type="FenceLost",
            non_retryable=True,
        )
    platform.promote(request.plan.target)
    return ""


def _shift_traffic(platform: Platform, request: StepRequest) -> str:
    plan = request.plan
    platform.set_weights({plan.source: 0, plan.target: 100})
    try:
        platform.close_router_sessions(plan.source)
    except InfraError as err:  # the weights are what matter; stale sessions only fail
        return f"router sessions to {plan.source} not closed: {err}"
    return ""


_STEPS: dict[str, StepFunction] = {
    FENCE_PRIMARY: _fence_primary,
    FENCE_ROUTER: _fence_router,
    STOP_PRIMARY: _stop_primary,
    CATCH_UP: _catch_up,
    PROMOTE: _promote,
    SHIFT_TRAFFIC: _shift_traffic,
}
