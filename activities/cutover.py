"""Cutover saga activities: preflight, the critical path's steps, compensation, verify, finalise.

Every step is idempotent and converges when retried after a worker SIGKILL: fencing and
weights are absolute, catch-up re-reads positions, promotion is a no-op on a primary. The
critical path (fence → catch up → promote → shift) exists twice with the same code:

- one activity per step (``fence_primary`` ... ``shift_traffic``), and
- ``switch_over``, which runs the steps in one activity on cached connections. Between two
  activities Temporal adds a workflow task and two server round trips (tens of ms on our
  dev server) while clients see no primary; inside one activity the window is a handful of
  SQL round trips. It heartbeats the steps it has finished, so a retry resumes after them,
  and reports them in its failure details, so the workflow compensates exactly those.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cutover_checks import CutoverPlan, PreflightRequest, plan_cutover
from activities.errors import translated_errors
from activities.shadow import ShadowActivities, ShadowRequest
from infra.errors import InfraError, InvalidRequestError
from infra.local.platform import LocalPlatform
from infra.local.postgres import PgEndpoint
from infra.local.rejoin import rejoin_as_standby
from infra.platform import Platform
from infra.pulumi_engine import StackDriver

FENCE_PRIMARY, FENCE_ROUTER, STOP_PRIMARY = "fence_primary", "fence_router", "stop_primary"
CATCH_UP, PROMOTE, SHIFT_TRAFFIC = "catch_up", "promote", "shift_traffic"
PLANNED_STEPS = [FENCE_PRIMARY, CATCH_UP, PROMOTE, SHIFT_TRAFFIC]
"""Planned: fence at the source, wait for its final position, promote, move traffic."""
EMERGENCY_STEPS = [FENCE_ROUTER, STOP_PRIMARY, CATCH_UP, PROMOTE, SHIFT_TRAFFIC]
"""Emergency: fence at the router (needs nothing from the source), stop it if it answers."""
STEP_ACTIVITIES = {
    FENCE_PRIMARY: "fence_primary",
    FENCE_ROUTER: "fence_router",
    STOP_PRIMARY: "stop_primary",
    CATCH_UP: "catch_up_shadow",
    PROMOTE: "promote_shadow",
    SHIFT_TRAFFIC: "shift_traffic",
}
"""Activity that runs each step on its own."""
NON_RETRYABLE_CUTOVER_TYPES = [
    "InvalidRequest", "CatchUpTimeout", "FenceLost", "PastPointOfNoReturn",
]
"""Failure types the workflow's retry policies must not retry."""


@dataclass
class StepRequest:
    """Input of every critical-path activity."""

    plan: CutoverPlan
    """The plan from preflight."""
    steps: list[str] = field(default_factory=list)
    """``switch_over`` only: the steps to run, in order."""
    catch_up_timeout_s: float = 10.0
    """How long catch-up may wait for the shadow."""


@dataclass
class StepOutcome:
    """One finished step."""

    step: str
    """Step name."""
    ms: float
    """Its duration in the attempt that finished it."""
    detail: str = ""
    """Step output (final position, data directory of a stopped source)."""


@dataclass
class RestoreRequest:
    """Compensation input: put the source back in charge (only before promotion)."""

    plan: CutoverPlan
    """The plan from preflight."""
    stopped_data_dir: str = ""
    """Set when ``stop_primary`` stopped the source: start it again."""
    promote_attempted: bool = False
    """Promotion was requested: wait for a promotion in flight to show before deciding."""


@dataclass
class VerifyResult:
    """Where a write through the router landed."""

    node: str
    """Node that took the write."""
    server_port: int
    """Port of the server that answered."""
    ms: float
    """Write + read round trip."""


@dataclass
class FinaliseRequest:
    """The cutover event to record."""

    plan: CutoverPlan
    """The plan from preflight."""
    outcome: str
    """``completed``, ``compensated`` or ``promoted_unverified``."""
    step_ms: dict[str, float]
    """Per-step durations."""
    detail: str = ""
    """Why, when not completed."""


@dataclass
class RejoinRequest:
    """Make a former primary the new primary's standby (pg_rewind, then stream)."""

    shadow: ShadowRequest
    """The protected instance."""
    former: str
    """Former primary node."""
    data_dir: str = ""
    """Its data directory when it cannot be asked (stopped); default: ask it."""


StepFunction = Callable[[Platform, StepRequest], str]


class CutoverActivities:
    """Activities of the cutover saga; clients and state dir come in through ``__init__``."""

    def __init__(self, driver: StackDriver, state_dir: Path) -> None:
        self._shadow = ShadowActivities(driver, state_dir)
        self._state_dir = state_dir

    def platform(self, request: ShadowRequest) -> LocalPlatform:
        """The platform object of ``request`` (validates it)."""
        return self._shadow.platform(request)

    @activity.defn
    def preflight_cutover(self, request: PreflightRequest) -> CutoverPlan:
        """Check everything a cutover needs and take the instance's cutover lock; change
        nothing else. Bad requests fail with ``InvalidRequest`` (not retried)."""
        with translated_errors():
            platform = self.platform(request.shadow)
            try:
                plan = plan_cutover(platform, request, self._lock_holder(request.shadow))
                self._take_lock(request.shadow, request.workflow_id)
                return plan
            finally:
                platform.close()

    @activity.defn
    def switch_over(self, request: StepRequest) -> list[StepOutcome]:
        """Run ``request.steps`` on cached connections, resuming after finished ones."""
        return self._run_steps(request, request.steps)

    @activity.defn
    def fence_primary(self, request: StepRequest) -> list[StepOutcome]:
        """Source out of the router, read-only, client sessions ended."""
        return self._run_steps(request, [FENCE_PRIMARY])

    @activity.defn
    def fence_router(self, request: StepRequest) -> list[StepOutcome]:
        """Source at weight 0 and in maintenance; needs nothing from the source itself."""
        return self._run_steps(request, [FENCE_ROUTER])

    @activity.defn
    def stop_primary(self, request: StepRequest) -> list[StepOutcome]:
        """Fence and stop the source if it still answers (emergency)."""
        return self._run_steps(request, [STOP_PRIMARY])

    @activity.defn
    def catch_up_shadow(self, request: StepRequest) -> list[StepOutcome]:
        """Wait until the target replayed the fenced source's final position."""
        return self._run_steps(request, [CATCH_UP])

    @activity.defn
    def promote_shadow(self, request: StepRequest) -> list[StepOutcome]:
        """Promote the target once the source provably cannot write (point of no return)."""
        return self._run_steps(request, [PROMOTE])

    @activity.defn
    def shift_traffic(self, request: StepRequest) -> list[StepOutcome]:
        """Absolute weights: target 100, source 0; close router sessions to the source."""
        return self._run_steps(request, [SHIFT_TRAFFIC])

    @activity.defn
    def restore_primary(self, request: RestoreRequest) -> None:
        """Compensation before promotion: source writable and weighted as before.

        Refuses (``PastPointOfNoReturn``) once the target is a primary: then the only safe
        direction is forward.
        """
        plan = request.plan
        with translated_errors():
            platform = self.platform(plan.shadow)
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
                if request.stopped_data_dir:
                    platform.start_node(plan.source, request.stopped_data_dir)
                if platform.probe(plan.source).reachable:
                    platform.unfence(plan.source)
                platform.set_weights(plan.previous_weights)
                activity.logger.warning(
                    "Cutover of %s compensated. Traffic is back on %s.",
                    plan.shadow.instance_id,
                    plan.source,
                )
            finally:
                platform.close()

    @activity.defn
    def verify_cutover(self, plan: CutoverPlan) -> VerifyResult:
        """A real write and read through the router must land on the new primary."""
        started = time.monotonic()
        with translated_errors():
            platform = self.platform(plan.shadow)
            router = PgEndpoint(port=plan.shadow.router_port)
            expected_port = platform.endpoint(plan.target).port
            try:
                with router.connect(timeout_s=2) as conn:
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS shadowshift_cutover_check"
                        " (workflow_id text PRIMARY KEY, checked_at timestamptz)"
                    )
                    row = conn.execute(
                        "INSERT INTO shadowshift_cutover_check VALUES (%s, now())"
                        " ON CONFLICT (workflow_id) DO UPDATE SET checked_at = now()"
                        " RETURNING inet_server_port()",
                        (plan.workflow_id,),
                    ).fetchone()
                    read_back = conn.execute(
                        "SELECT count(*) FROM shadowshift_cutover_check WHERE workflow_id = %s",
                        (plan.workflow_id,),
                    ).fetchone()
            except psycopg.Error as err:
                raise ApplicationError(
                    f"write through the router failed: {str(err).strip()}", type="VerifyFailed"
                ) from err
            port = int(row[0]) if row else -1
            if port != expected_port or not read_back or read_back[0] != 1:
                raise ApplicationError(
                    f"the router sent the write to port {port}, not {plan.target} "
                    f"({expected_port})",
                    type="VerifyFailed",
                )
        return VerifyResult(plan.target, port, round((time.monotonic() - started) * 1000, 2))

    @activity.defn
    def recover_forward(self, plan: CutoverPlan) -> None:
        """After promotion: re-assert every post-promotion fact (all idempotent)."""
        with translated_errors():
            platform = self.platform(plan.shadow)
            try:
                platform.promote(plan.target)
                try:
                    platform.fence(plan.source)
                except (psycopg.OperationalError, InfraError):
                    platform.fence_router(plan.source)  # unreachable: the router fence holds
                platform.set_weights({plan.source: 0, plan.target: 100})
                platform.close_router_sessions(plan.source)
                activity.logger.warning(
                    "Re-applied the cutover of %s to %s.", plan.shadow.instance_id, plan.target
                )
            finally:
                platform.close()

    @activity.defn
    def finalise_cutover(self, request: FinaliseRequest) -> str:
        """Append the cutover event to the instance's log, release the lock; returns the log."""
        plan = request.plan
        folder = self._state_dir / "instances" / plan.shadow.instance_id
        folder.mkdir(parents=True, exist_ok=True)
        log_file = folder / "cutovers.jsonl"
        already = log_file.exists() and plan.workflow_id in log_file.read_text()
        if not already:  # a retry after a crash must not record the event twice
            event = {
                "workflow_id": plan.workflow_id,
                "recorded_at": time.time(),
                "outcome": request.outcome,
                "mode": plan.mode,
                "former_primary": plan.source,
                "primary": plan.target if request.outcome != "compensated" else plan.source,
                "step_ms": request.step_ms,
                "possible_loss_bytes": plan.possible_loss_bytes,
                "detail": request.detail,
            }
            with log_file.open("a") as out:
                out.write(json.dumps(event) + "\n")
        if self._lock_holder(plan.shadow) == plan.workflow_id:
            self._lock_path(plan.shadow).unlink(missing_ok=True)
        return str(log_file)

    @activity.defn
    def rejoin_former_primary(self, request: RejoinRequest) -> str:
        """Rewind the former primary onto the new primary's timeline and make it stream."""
        with translated_errors():
            platform = self.platform(request.shadow)
            try:
                return rejoin_as_standby(platform, request.former, request.data_dir or None)
            finally:
                platform.close()

    # -- internals -------------------------------------------------------------------------

    def _run_steps(self, request: StepRequest, steps: list[str]) -> list[StepOutcome]:
        details = activity.info().heartbeat_details
        done = [StepOutcome(**item) for item in details[0]] if details else []
        finished = {outcome.step for outcome in done}
        platform = self.platform(request.plan.shadow)
        try:
            for node in (request.plan.target, request.plan.source):
                platform.probe(node)  # open the sessions before the window, not inside it
            for step in steps:
                if step in finished:
                    continue
                started = time.monotonic()
                try:
                    detail = _STEPS[step](platform, request)
                except ApplicationError as err:
                    raise ApplicationError(
                        err.message, [o.step for o in done], type=err.type,
                        non_retryable=err.non_retryable,
                    ) from err
                except (InfraError, psycopg.Error) as err:
                    raise ApplicationError(
                        f"{step} failed: {str(err).strip()}", [o.step for o in done],
                        type="InvalidRequest" if isinstance(err, InvalidRequestError)
                        else "StepFailed",
                        non_retryable=isinstance(err, InvalidRequestError),
                    ) from err
                done.append(StepOutcome(step, round((time.monotonic() - started) * 1000, 2),
                                        detail))
                activity.heartbeat([asdict(outcome) for outcome in done])
        finally:
            platform.close()
        return [outcome for outcome in done if outcome.step in steps]

    def _lock_path(self, shadow: ShadowRequest) -> Path:
        return self._state_dir / "instances" / shadow.instance_id / "cutover.lock"

    def _lock_holder(self, shadow: ShadowRequest) -> str | None:
        try:
            return self._lock_path(shadow).read_text().strip() or None
        except FileNotFoundError:
            return None

    def _take_lock(self, shadow: ShadowRequest, workflow_id: str) -> None:
        path = self._lock_path(shadow)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self._lock_holder(shadow)
            if holder != workflow_id:
                raise InvalidRequestError(
                    f"cutover {holder} of {shadow.instance_id} is in progress"
                ) from None
            return
        with os.fdopen(fd, "w") as out:
            out.write(workflow_id + "\n")


def _beat() -> None:
    activity.heartbeat()


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
            _beat()
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
