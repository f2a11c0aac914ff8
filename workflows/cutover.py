"""``CutoverWorkflow``: move an instance's traffic from its primary to its shadow, durably.

Operational flow: preflight → fence → catch up → promote (point of no return) → shift
traffic → verify → finalise. Each step is an idempotent activity; a completed step appends
its compensation, and a failure before promotion runs them in reverse, shielded from
cancellation. After promotion nothing is undone: failures are handled forward (re-assert
the switch, verify again, alert). Emergency mode fences at the router first and stops the
old primary if it still answers.

By default the four critical steps run as one activity (``switch_over``) so Temporal's
round trips stay out of the client-visible window; ``combine_critical_path=False`` runs
them one activity each. Later this runs as a child of the per-instance workflow; it is
startable on its own (workflow id :func:`cutover_workflow_id`). Change the step sequence
only behind ``workflow.patched(...)`` so running cutovers replay unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from contracts.cutover import (
    CRITICAL_STEPS,
    EMERGENCY_STEPS,
    FENCE_PRIMARY,
    FENCE_ROUTER,
    PLANNED_STEPS,
    PROMOTE,
    SHIFT_TRAFFIC,
    STEP_ACTIVITIES,
    STOP_PRIMARY,
    CutoverActivities,
    CutoverInput,
    CutoverPlan,
    CutoverResult,
    CutoverState,
    FinaliseRequest,
    PreflightRequest,
    RestoreRequest,
    StepOutcome,
    StepRequest,
)
from workflows.cutover_saga import error_type, reason, run_activity, shielded

_FENCES = (FENCE_PRIMARY, FENCE_ROUTER)
Compensations = list[tuple[str, Callable[[], Awaitable[None]]]]
"""Undo steps ``(name, undo)``, appended after their step succeeded, run in reverse."""
_MAX_FORWARD_ROUNDS = 3
_RESTORE = CutoverActivities.restore_primary.__name__
"""The compensation of a fence, named after the activity that runs it."""
A = TypeVar("A")
T = TypeVar("T")


@workflow.defn
class CutoverWorkflow:
    """The cutover saga of one instance."""

    def __init__(self) -> None:
        self._state = CutoverState()
        self._queue = ""
        self._trigger = ""
        self._fenced_at = 0.0
        """When the source was cut off (the activity's clock), for the lease wait."""

    @workflow.query
    def progress(self) -> CutoverState:
        """Where the cutover is."""
        return self._state

    @workflow.run
    async def run(self, request: CutoverInput) -> CutoverResult:
        """Preflight, critical path, verify, finalise; compensate or recover forward."""
        self._queue = request.activity_task_queue or workflow.info().task_queue
        self._trigger = request.trigger
        self._state = CutoverState(request.instance.instance_id, request.mode, "preflight",
                                   trigger=request.trigger)
        plan = await self._preflight(request)
        self._state.source, self._state.target = plan.source, plan.target
        outcome, detail = "failed", "interrupted"
        try:
            outcome, detail = await self._cut_over(request, plan)
        finally:
            self._state.outcome, self._state.detail = outcome, detail
            self._state.phase = "finalise"
            record = await shielded(self._finalise(plan, outcome, detail))
            self._state.phase = "done"
        primary = plan.source if outcome == "compensated" else plan.target
        critical = [s for s in self._state.step_ms if s in CRITICAL_STEPS]
        return CutoverResult(
            plan.instance.instance_id, plan.mode, outcome, plan.source, primary,
            dict(self._state.step_ms),
            round(sum(self._state.step_ms[s] for s in critical), 2),
            plan.possible_loss_bytes, plan.loss_bound, self._state.forward_recoveries,
            detail, record,
        )

    async def _preflight(self, request: CutoverInput) -> CutoverPlan:
        preflight = PreflightRequest(request.instance, request.mode, workflow.info().workflow_id)
        try:
            return await self._activity(CutoverActivities.preflight_cutover, preflight,
                                        attempts=3, summary=f"preflight ({request.mode})")
        except ActivityError as err:
            workflow.logger.warning("Cutover refused: %s", reason(err))
            raise ApplicationError(
                f"cutover refused: {reason(err)}", type="CutoverRejected", non_retryable=True
            ) from err

    async def _cut_over(self, request: CutoverInput, plan: CutoverPlan) -> tuple[str, str]:
        steps = PLANNED_STEPS if plan.mode == "planned" else EMERGENCY_STEPS
        restore = RestoreRequest(plan)
        compensations: Compensations = []
        self._state.phase = "critical_path"
        try:
            if request.combine_critical_path:
                await self._switch_over(request, plan, steps, restore, compensations)
            else:
                for step in steps:
                    restore.promote_attempted = step == PROMOTE
                    outcomes = await self._activity(
                        STEP_ACTIVITIES[step],
                        StepRequest(plan, [], request.catch_up_timeout_s, request.fence_lease_s,
                                    self._fenced_at),
                        attempts=10 if step == SHIFT_TRAFFIC else 3,
                        summary=_step_summary(step, plan),
                    )
                    self._record(outcomes, restore, compensations)
        except (ActivityError, asyncio.CancelledError) as err:
            if not self._state.point_of_no_return:
                why = "cancelled" if isinstance(err, asyncio.CancelledError) else reason(err)
                if not compensations:  # the fence itself failed, maybe halfway: undo that too
                    compensations.append((_RESTORE, lambda: self._restore(restore)))
                if await shielded(self._compensate(compensations, why)):
                    if isinstance(err, asyncio.CancelledError):
                        raise
                    return "compensated", why
        return await shielded(self._finish_forward(plan))

    async def _switch_over(
        self, request: CutoverInput, plan: CutoverPlan, steps: list[str],
        restore: RestoreRequest, compensations: Compensations,
    ) -> None:
        try:
            outcomes = await self._activity(
                CutoverActivities.switch_over,
                StepRequest(plan, steps, request.catch_up_timeout_s, request.fence_lease_s),
                attempts=3, summary=f"switch {plan.source} → {plan.target}: {', '.join(steps)}",
            )
        except ActivityError as err:
            # Register what the last attempt reported as finished. Without details (a timeout)
            # assume the fence happened: restoring is safe, it refuses once promoted.
            cause = err.cause
            finished = list(cause.details[0]) if isinstance(cause, ApplicationError) and \
                cause.details else list(steps[:1])
            if PROMOTE in finished:
                self._state.point_of_no_return = True
            else:
                restore.promote_attempted = True
                self._record([StepOutcome(s, 0.0) for s in finished], restore, compensations)
            raise
        self._record(outcomes, restore, compensations)

    def _record(
        self, outcomes: list[StepOutcome], restore: RestoreRequest, compensations: Compensations
    ) -> None:
        """Book finished steps; compensations are appended only after their step succeeded."""
        for outcome in outcomes:
            if outcome.step not in self._state.completed_steps:
                self._state.completed_steps.append(outcome.step)
            self._state.step_ms[outcome.step] = outcome.ms
            if outcome.step in (FENCE_ROUTER, STOP_PRIMARY):
                self._fenced_at = max(self._fenced_at, outcome.finished_at)
            if outcome.step in _FENCES and not compensations:
                compensations.append((_RESTORE, lambda: self._restore(restore)))
            elif outcome.step == STOP_PRIMARY and outcome.detail:
                restore.stopped_token = outcome.detail
            elif outcome.step == PROMOTE:
                self._state.point_of_no_return = True
                compensations.clear()

    async def _restore(self, restore: RestoreRequest) -> None:
        await self._activity(CutoverActivities.restore_primary, restore, attempts=10,
                             summary=f"compensate: restore {restore.plan.source}")

    async def _compensate(self, compensations: Compensations, why: str) -> bool:
        """Undo in reverse; ``False`` when the target turned out promoted (go forward)."""
        self._state.phase = "compensating"
        workflow.logger.warning("Cutover failed before promotion (%s). Compensating.", why)
        for name, undo in reversed(compensations):
            try:
                await undo()
            except ActivityError as err:
                if error_type(err) == "PastPointOfNoReturn":
                    self._state.point_of_no_return = True
                    return False
                raise
            self._state.compensated.append(name)
        return True

    async def _finish_forward(self, plan: CutoverPlan) -> tuple[str, str]:
        """Verify; on failure re-assert the switch and verify again, then alert."""
        last = ""
        for attempt in range(_MAX_FORWARD_ROUNDS + 1):
            if attempt or SHIFT_TRAFFIC not in self._state.completed_steps:
                self._state.phase = "recovering"
                self._state.forward_recoveries += 1
                try:
                    await self._activity(CutoverActivities.recover_forward, plan, attempts=5,
                                         summary=f"re-assert the switch to {plan.target}")
                except ActivityError as err:
                    last = reason(err)
                    continue
            self._state.phase = "verify"
            try:
                verified = await self._activity(CutoverActivities.verify_cutover, plan,
                                                attempts=2,
                                                summary=f"verify a write lands on {plan.target}")
            except ActivityError as err:
                last = reason(err)
                workflow.logger.warning("Verify after promotion failed: %s", last)
                continue
            self._state.step_ms["verify"] = verified.ms
            return "completed", ""
        workflow.logger.error(
            "%s is promoted but traffic could not be verified: %s. Operator attention needed.",
            plan.target, last,
        )
        return "promoted_unverified", last

    async def _finalise(self, plan: CutoverPlan, outcome: str, detail: str) -> str:
        request = FinaliseRequest(plan, outcome, dict(self._state.step_ms), detail,
                                  self._trigger)
        record = await self._activity(CutoverActivities.finalise_cutover, request, attempts=10,
                                      summary=f"record the cutover ({outcome})")
        workflow.logger.info("Cutover of %s %s.", plan.instance.instance_id, outcome)
        return record

    async def _activity(self, activity: Callable[[CutoverActivities, A], T], arg: A, *,
                        attempts: int, summary: str) -> T:
        return await run_activity(activity, arg, task_queue=self._queue, attempts=attempts,
                                  summary=summary)


def _step_summary(step: str, plan: CutoverPlan) -> str:
    """What the Web UI's timeline shows for a step run on its own."""
    node = plan.target if step in (PROMOTE, SHIFT_TRAFFIC) else plan.source
    return f"{step.replace('_', ' ')} {node}"
