"""Cutover saga activities: preflight, the critical path, compensation, verify, finalise.

The critical path (fence → catch up → promote → shift, see :mod:`activities.cutover_steps`)
exists twice with the same code:

- one activity per step (``fence_primary`` ... ``shift_traffic``), and
- ``switch_over``, which runs the steps in one activity on cached connections. Between two
  activities Temporal adds a workflow task and two server round trips (tens of ms on our
  dev server) while clients see no primary; inside one activity the window is a handful of
  round trips to the servers. It heartbeats the steps it has finished, so a retry resumes
  after them, and reports them in its failure details, so the workflow compensates exactly
  those.

Every activity works through :class:`~infra.platform.Platform` (built by
:func:`infra.factory.platform_for`), so the saga is the same on every platform.
"""

from __future__ import annotations

import time
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cutover_checks import plan_cutover
from activities.cutover_record import CutoverRecord
from activities.cutover_steps import run_steps
from activities.errors import translated_errors
from activities.heartbeat import heartbeating
from contracts.cutover import (
    CATCH_UP,
    CRITICAL_STEPS,
    FENCE_PRIMARY,
    FENCE_ROUTER,
    PROMOTE,
    SHIFT_TRAFFIC,
    STOP_PRIMARY,
    CutoverActivities,
    CutoverPlan,
    FinaliseRequest,
    PreflightRequest,
    RestoreRequest,
    StepOutcome,
    StepRequest,
    VerifyResult,
)
from contracts.shadow import PlatformRequest
from infra.errors import InfraError
from infra.factory import Platforms
from infra.observability import observe_cutover
from infra.platform import Platform


class PlatformCutoverActivities(CutoverActivities):
    """Activities of the cutover saga, through each request's platform; the cutover record
    (lock and event log) lives in the state dir."""

    def __init__(self, platforms: Platforms, state_dir: Path) -> None:
        self._platforms = platforms
        self._state_dir = state_dir

    def platform(self, request: PlatformRequest) -> Platform:
        """The platform object of ``request``."""
        return self._platforms.platform_for(request)

    @activity.defn
    def preflight_cutover(self, request: PreflightRequest) -> CutoverPlan:
        """Check everything a cutover needs and take the instance's cutover lock; change
        nothing else. Bad requests fail with ``InvalidRequest`` (not retried)."""
        # A source that hangs holds every probe of it for its connect timeout: the beat keeps
        # a slow preflight from reading as a dead worker under the saga's short timeout.
        with translated_errors(), heartbeating("preflight", every_s=1.0):
            platform = self.platform(request.instance)
            try:
                record = self._record(request.instance)
                plan = plan_cutover(platform, request, record.lock_holder())
                record.take_lock(request.workflow_id)
                if plan.mode == "planned":
                    platform.prepare_cutover(plan.source)
                return plan
            finally:
                platform.close()

    @activity.defn
    def switch_over(self, request: StepRequest) -> list[StepOutcome]:
        """Run ``request.steps`` on cached connections, resuming after finished ones."""
        return self._run(request, request.steps)

    @activity.defn
    def fence_primary(self, request: StepRequest) -> list[StepOutcome]:
        """Source out of the router, read-only, client sessions ended."""
        return self._run(request, [FENCE_PRIMARY])

    @activity.defn
    def fence_router(self, request: StepRequest) -> list[StepOutcome]:
        """Source at weight 0 and in maintenance; needs nothing from the source itself."""
        return self._run(request, [FENCE_ROUTER])

    @activity.defn
    def stop_primary(self, request: StepRequest) -> list[StepOutcome]:
        """Fence and stop the source if it still answers (emergency)."""
        return self._run(request, [STOP_PRIMARY])

    @activity.defn
    def catch_up_shadow(self, request: StepRequest) -> list[StepOutcome]:
        """Wait until the target replayed the fenced source's final position."""
        return self._run(request, [CATCH_UP])

    @activity.defn
    def promote_shadow(self, request: StepRequest) -> list[StepOutcome]:
        """Promote the target once the source provably cannot write (point of no return)."""
        return self._run(request, [PROMOTE])

    @activity.defn
    def shift_traffic(self, request: StepRequest) -> list[StepOutcome]:
        """Absolute weights: target 100, source 0; close router sessions to the source."""
        return self._run(request, [SHIFT_TRAFFIC])

    @activity.defn
    def restore_primary(self, request: RestoreRequest) -> None:
        """Compensation before promotion: source writable and weighted as before.

        Refuses (``PastPointOfNoReturn``) once the target is a primary: then the only safe
        direction is forward.
        """
        plan = request.plan
        with translated_errors():
            platform = self.platform(plan.instance)
            try:
                settle_until = time.monotonic() + (2.0 if request.promote_attempted else 0.0)
                while True:
                    target = platform.probe(plan.target)
                    if target.reachable and target.in_recovery is False:
                        raise ApplicationError(
                            f"{plan.target} is already a primary; recovering forward instead",
                            type="PastPointOfNoReturn",
                            non_retryable=True,
                        )
                    if time.monotonic() >= settle_until:
                        break
                    time.sleep(0.05)
                if request.stopped_token:
                    platform.start_node(plan.source, request.stopped_token)
                if platform.probe(plan.source).reachable:
                    platform.unfence(plan.source)
                platform.set_weights(plan.previous_weights)
                activity.logger.warning(
                    "Cutover of %s compensated. Traffic is back on %s.",
                    plan.instance.instance_id,
                    plan.source,
                )
            finally:
                platform.close()

    @activity.defn
    def verify_cutover(self, plan: CutoverPlan) -> VerifyResult:
        """A real write and read through the router must land on the new primary."""
        started = time.monotonic()
        with translated_errors():
            platform = self.platform(plan.instance)
            try:
                node = platform.write_through_router(plan.workflow_id)
            except InfraError as err:
                raise ApplicationError(str(err), type="VerifyFailed") from err
            finally:
                platform.close()
        if node != plan.target:
            raise ApplicationError(
                f"the router sent the write to {node}, not {plan.target}", type="VerifyFailed"
            )
        return VerifyResult(node, round((time.monotonic() - started) * 1000, 2))

    @activity.defn
    def recover_forward(self, plan: CutoverPlan) -> None:
        """After promotion: re-assert every post-promotion fact (all idempotent)."""
        with translated_errors():
            platform = self.platform(plan.instance)
            try:
                platform.promote(plan.target)
                try:
                    platform.fence(plan.source)
                except Exception:  # unreachable or broken: the router fence needs nothing
                    platform.fence_router(plan.source)  # from the node
                platform.set_weights({plan.source: 0, plan.target: 100})
                platform.close_router_sessions(plan.source)
                activity.logger.warning(
                    "Re-applied the cutover of %s to %s.", plan.instance.instance_id, plan.target
                )
            finally:
                platform.close()

    @activity.defn
    def finalise_cutover(self, request: FinaliseRequest) -> str:
        """Append the cutover event to the instance's log (once per workflow run), release the
        lock; returns the log."""
        plan = request.plan
        run_id = activity.info().workflow_run_id
        if not run_id:  # the once-only key: without it every cutover would share one entry
            raise ApplicationError(
                "finalise_cutover runs only as an activity of a cutover workflow (it got no "
                "workflow run id); start the cutover workflow instead of calling it alone",
                type="InvalidRequest", non_retryable=True)
        record = self._record(plan.instance)
        started_at = record.lock_taken_at()
        added = record.append_event(plan.workflow_id, run_id, {
            "outcome": request.outcome,
            "mode": plan.mode,
            "former_primary": plan.source,
            "primary": plan.target if request.outcome != "compensated" else plan.source,
            "step_ms": request.step_ms,
            "possible_loss_bytes": plan.possible_loss_bytes,
            "detail": request.detail,
            "trigger": request.trigger,
        })
        if added:  # once per cutover, like the event
            observe_cutover(
                plan.instance.instance_id, plan.mode, request.outcome,
                blackout_ms=sum(ms for s, ms in request.step_ms.items() if s in CRITICAL_STEPS),
                duration_s=None if started_at is None else time.time() - started_at,
            )
        record.release_lock(plan.workflow_id)
        return str(record.log_path)

    # -- internals -------------------------------------------------------------------------

    def _run(self, request: StepRequest, steps: list[str]) -> list[StepOutcome]:
        platform = self.platform(request.plan.instance)
        try:
            return run_steps(platform, request, steps)
        finally:
            platform.close()

    def _record(self, instance: PlatformRequest) -> CutoverRecord:
        return CutoverRecord(self._state_dir, instance.instance_id)
