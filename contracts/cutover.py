"""The cutover saga's contract: its input, progress and result, and its activities.

Critical path: fence → catch up → promote (point of no return) → shift traffic; planned
cutovers fence at the source, emergency ones at the router first (the source may be dead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity

from contracts.protection import OPERATOR
from contracts.shadow import PlatformRequest

FENCE_PRIMARY, FENCE_ROUTER, STOP_PRIMARY = "fence_primary", "fence_router", "stop_primary"
CATCH_UP, PROMOTE, SHIFT_TRAFFIC = "catch_up", "promote", "shift_traffic"
PLANNED_STEPS = [FENCE_PRIMARY, CATCH_UP, PROMOTE, SHIFT_TRAFFIC]
"""Planned: fence at the source, wait for its final position, promote, move traffic."""
EMERGENCY_STEPS = [FENCE_ROUTER, STOP_PRIMARY, CATCH_UP, PROMOTE, SHIFT_TRAFFIC]
"""Emergency: fence at the router (needs nothing from the source), stop it if it answers."""
CRITICAL_STEPS = (FENCE_PRIMARY, FENCE_ROUTER, STOP_PRIMARY, CATCH_UP, PROMOTE, SHIFT_TRAFFIC)
"""Every step of the critical path (their durations sum to the blackout)."""
MODES = ("planned", "emergency")

NON_RETRYABLE_CUTOVER_TYPES = [
    "InvalidRequest", "Unsupported", "CatchUpTimeout", "FenceLost", "PastPointOfNoReturn",
]
"""Failure types the cutover's retry policies must not retry."""


def cutover_workflow_id(instance_id: str) -> str:
    """Workflow id of an instance's cutover: one at a time per instance."""
    return f"cutover-{instance_id}"


@dataclass
class CutoverInput:
    """Which instance to cut over, and how."""

    instance: PlatformRequest
    """The protected instance, with its roles now."""
    mode: str = "planned"
    """``planned`` (primary healthy, zero loss) or ``emergency`` (primary failing or dead)."""
    reason: str = ""
    """Why, for the record."""
    trigger: str = OPERATOR
    """What asked for it (``contracts.protection.TRIGGERS``)."""
    combine_critical_path: bool = True
    """Run fence → shift in one activity (short blackout) instead of one activity each."""
    catch_up_timeout_s: float = 10.0
    """How long the shadow may take to replay the fenced primary's final position."""
    activity_task_queue: str = ""
    """Task queue of the activities; default: the workflow's own."""
    fence_lease_s: float = 0.0
    """Emergency: promote no earlier than this long after the source was cut off (the
    platform's ``Capabilities.fence_lease_s``: its agent has fenced it by then)."""


@dataclass
class CutoverState:
    """Progress, answered by the ``progress`` query."""

    instance_id: str = ""
    """The instance."""
    mode: str = ""
    """``planned`` or ``emergency``."""
    phase: str = "pending"
    """Current phase: preflight, critical_path, compensating, verify, recovering, finalise, done."""
    source: str = ""
    """Node losing the traffic (the former primary once done)."""
    target: str = ""
    """Node gaining it."""
    completed_steps: list[str] = field(default_factory=list)
    """Steps finished so far, in order."""
    step_ms: dict[str, float] = field(default_factory=dict)
    """Duration of each finished step."""
    point_of_no_return: bool = False
    """The target was promoted: only forward from here."""
    compensated: list[str] = field(default_factory=list)
    """Compensations that ran."""
    forward_recoveries: int = 0
    """Times the switch was re-asserted after promotion."""
    outcome: str = ""
    """``completed``, ``compensated`` or ``promoted_unverified`` once done."""
    detail: str = ""
    """Why, when not completed."""
    trigger: str = ""
    """What asked for it (``contracts.protection.TRIGGERS``; empty when started on its own)."""


@dataclass
class CutoverResult:
    """The cutover event."""

    instance_id: str
    """The instance."""
    mode: str
    """``planned`` or ``emergency``."""
    outcome: str
    """``completed``, ``compensated`` or ``promoted_unverified``."""
    former_primary: str
    """The node that served before."""
    primary: str
    """The node that serves now."""
    step_ms: dict[str, float]
    """Per-step durations (inside the activities)."""
    critical_path_ms: float
    """Fence to traffic shifted, summed over the critical steps."""
    possible_loss_bytes: int | None
    """Bound on lost acknowledged writes (0 planned and tier 1; ``None`` unknown)."""
    loss_bound: str
    """The bound in one sentence."""
    forward_recoveries: int
    """Times the switch was re-asserted after promotion."""
    detail: str
    """Why, when not completed."""
    record: str
    """Where the event was recorded."""


@dataclass
class PreflightRequest:
    """What the workflow asks before anything changes."""

    instance: PlatformRequest
    """The protected instance."""
    mode: str
    """``planned`` or ``emergency``."""
    workflow_id: str
    """The cutover's workflow id; holds the instance's cutover lock."""


@dataclass
class CutoverPlan:
    """Who loses and who gains the traffic, decided once by preflight."""

    instance: PlatformRequest
    """The protected instance."""
    mode: str
    """``planned`` or ``emergency``."""
    workflow_id: str
    """Holder of the cutover lock."""
    source: str
    """Node that serves now and becomes the former primary."""
    target: str
    """Standby that becomes the primary."""
    previous_weights: dict[str, int]
    """Router weights before the cutover, restored by compensation."""
    source_reachable: bool = True
    """Whether the source answered during preflight."""
    lag_bytes: int | None = None
    """Replication lag seen by preflight (``None`` when the source is unreachable)."""
    possible_loss_bytes: int | None = 0
    """Bound on acknowledged writes that may be lost (``None``: unknown, see loss_bound)."""
    loss_bound: str = ""
    """The bound in one sentence."""


@dataclass
class StepRequest:
    """Input of every critical-path activity."""

    plan: CutoverPlan
    """The plan from preflight."""
    steps: list[str] = field(default_factory=list)
    """``switch_over`` only: the steps to run, in order."""
    catch_up_timeout_s: float = 10.0
    """How long catch-up may wait for the shadow."""
    fence_lease_s: float = 0.0
    """Emergency: promotion waits until ``fenced_at`` + this (see ``CutoverInput``)."""
    fenced_at: float = 0.0
    """Epoch seconds at which the source was cut off (0: not yet, or in this activity)."""


@dataclass
class StepOutcome:
    """One finished step."""

    step: str
    """Step name."""
    ms: float
    """Its duration in the attempt that finished it."""
    detail: str = ""
    """Step output (final position, data directory of a stopped source)."""
    finished_at: float = 0.0
    """Epoch seconds at which it finished."""


@dataclass
class RestoreRequest:
    """Compensation input: put the source back in charge (only before promotion)."""

    plan: CutoverPlan
    """The plan from preflight."""
    stopped_token: str = ""
    """Set when ``stop_primary`` stopped the source: what starts it again."""
    promote_attempted: bool = False
    """Promotion was requested: wait for a promotion in flight to show before deciding."""


@dataclass
class VerifyResult:
    """Where a write through the router landed."""

    node: str
    """Node that took the write."""
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
    trigger: str = OPERATOR
    """What asked for the cutover."""


class CutoverActivities:
    """The cutover saga's activities; every one is idempotent."""

    @activity.defn
    def preflight_cutover(self, request: PreflightRequest) -> CutoverPlan:
        """Check everything a cutover needs and take the instance's cutover lock; change
        nothing else. Bad requests fail with ``InvalidRequest`` (not retried)."""
        raise NotImplementedError

    @activity.defn
    def switch_over(self, request: StepRequest) -> list[StepOutcome]:
        """Run ``request.steps`` on cached connections, resuming after finished ones."""
        raise NotImplementedError

    @activity.defn
    def fence_primary(self, request: StepRequest) -> list[StepOutcome]:
        """Source out of the router, read-only, client sessions ended."""
        raise NotImplementedError

    @activity.defn
    def fence_router(self, request: StepRequest) -> list[StepOutcome]:
        """Source at weight 0 and in maintenance; needs nothing from the source itself."""
        raise NotImplementedError

    @activity.defn
    def stop_primary(self, request: StepRequest) -> list[StepOutcome]:
        """Fence and stop the source if it still answers (emergency)."""
        raise NotImplementedError

    @activity.defn
    def catch_up_shadow(self, request: StepRequest) -> list[StepOutcome]:
        """Wait until the target replayed the fenced source's final position."""
        raise NotImplementedError

    @activity.defn
    def promote_shadow(self, request: StepRequest) -> list[StepOutcome]:
        """Promote the target once the source provably cannot write (point of no return)."""
        raise NotImplementedError

    @activity.defn
    def shift_traffic(self, request: StepRequest) -> list[StepOutcome]:
        """Absolute weights: target 100, source 0; close router sessions to the source."""
        raise NotImplementedError

    @activity.defn
    def restore_primary(self, request: RestoreRequest) -> None:
        """Compensation before promotion: source writable and weighted as before. Refuses
        (``PastPointOfNoReturn``) once the target is a primary."""
        raise NotImplementedError

    @activity.defn
    def verify_cutover(self, plan: CutoverPlan) -> VerifyResult:
        """A real write and read through the router must land on the new primary."""
        raise NotImplementedError

    @activity.defn
    def recover_forward(self, plan: CutoverPlan) -> None:
        """After promotion: re-assert every post-promotion fact (all idempotent)."""
        raise NotImplementedError

    @activity.defn
    def finalise_cutover(self, request: FinaliseRequest) -> str:
        """Record the cutover event (once per workflow run), release the lock; returns where
        it was recorded."""
        raise NotImplementedError


STEP_ACTIVITIES = {
    FENCE_PRIMARY: CutoverActivities.fence_primary,
    FENCE_ROUTER: CutoverActivities.fence_router,
    STOP_PRIMARY: CutoverActivities.stop_primary,
    CATCH_UP: CutoverActivities.catch_up_shadow,
    PROMOTE: CutoverActivities.promote_shadow,
    SHIFT_TRAFFIC: CutoverActivities.shift_traffic,
}
"""The activity that runs each step on its own."""
