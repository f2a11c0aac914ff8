"""``InstanceProtectionWorkflow``: one long-running workflow per protected instance.

It owns the instance's lifecycle (and is the only writer of its Pulumi stack, so the workflow
id doubles as the stack's mutex): provisioning → syncing → protected, then cutting over when
the policy or an operator asks. It keeps no timers while protected: watching is done by the
fleet watcher, which signals ``report_risk`` only when something changes, so an idle
protection costs no Temporal actions at all.

Messages: updates ``request_cutover``, ``set_policy`` and ``unprotect`` (validated before
anything is recorded), signals ``report_risk``, ``report_event``, ``pause``, ``resume``,
query ``status``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.errors import NON_RETRYABLE_TYPES
    from activities.shadow import ShadowRequest, WaitForSyncRequest
    from infra.platform import ReplicationStatus
    from workflows import search_attributes
    from workflows.cutover import (
        CutoverInput,
        CutoverResult,
        CutoverWorkflow,
        cutover_workflow_id,
    )
    from workflows.protection_spec import (
        PolicySpec,
        ProtectionSpec,
        SpecError,
        validate_policy,
    )

CONTINUE_AS_NEW_EVENTS = 4000
"""Continue as new before the history grows past Temporal's suggested size."""
HISTORY_KEPT = 50
EVENT_POINTS = 50.0
"""Readiness points an external event of severity 1.0 adds to the latest score."""
"""Decision log lines kept in state (and carried across continue-as-new)."""

_ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


@dataclass
class RiskReport:
    """A scoring result the fleet watcher sends when it matters."""

    readiness_score: float
    """Migration Readiness Score, 0..100."""
    failure_probability: float
    """Model probability of failure within the horizon, 0..1."""
    decision: str
    """The policy's decision: ``hold`` or ``migrate``."""
    at: float
    """When it was scored (epoch seconds)."""


@dataclass
class ExternalEvent:
    """An alert from another service: scheduled maintenance, a hardware warning..."""

    kind: str
    """Short name, e.g. ``system-maintenance``, ``instance-retirement``, ``disk-smart``."""
    detail: str = ""
    """Free text for the operator."""
    severity: float = 0.5
    """0..1; the fleet watcher adds it to the instance's risk."""


@dataclass
class CutoverRequest:
    """An operator's or service's request to move traffic now."""

    reason: str = "operator request"
    """Why, for the record."""
    force: bool = False
    """Skip the cooldown check (never skips the health checks)."""


@dataclass
class UnprotectRequest:
    """An operator's request to end the protection and destroy the shadow."""

    reason: str = "operator request"
    """Why, for the record."""


@dataclass
class ProtectionState:
    """Everything the workflow knows; handed over intact on continue-as-new."""

    spec: ProtectionSpec
    """What is protected and how."""
    phase: str = "provisioning"
    """provisioning, syncing, protected, cutting_over, recovering, degraded."""
    paused: bool = False
    """Paused protections never act on their own."""
    shadow_healthy: bool = False
    """Whether the shadow reached its tier's sync bound."""
    latest_risk: RiskReport | None = None
    """Most recent scoring result."""
    events: list[ExternalEvent] = field(default_factory=list)
    """External alerts not yet cleared."""
    pending_cutover: CutoverRequest | None = None
    """A cutover that was asked for and has not run yet."""
    last_cutover_at: float | None = None
    """When the last cutover finished (workflow time, epoch seconds)."""
    cutovers: int = 0
    """Cutovers done."""
    replication: ReplicationStatus | None = None
    """Last replication status seen."""
    log: list[str] = field(default_factory=list)
    """Plain sentences about decisions, newest last."""
    events_seen: int = 0
    """External events received over the protection's whole life."""
    continue_as_new_events: int = CONTINUE_AS_NEW_EVENTS
    """History length after which the workflow continues as new (lowered by tests)."""
    unprotect: UnprotectRequest | None = None
    """Set by the ``unprotect`` update: destroy the shadow, then end the workflow."""


@dataclass
class ProtectionStatus:
    """What ``status`` answers."""

    instance_id: str
    phase: str
    paused: bool
    shadow_healthy: bool
    readiness_score: float | None
    failure_probability: float | None
    lag_bytes: int | None
    cutovers: int
    last_cutover_at: float | None
    next_action: str
    log: list[str]
    events_seen: int = 0
    policy: PolicySpec | None = None


@workflow.defn
class InstanceProtectionWorkflow:
    """Protect one instance for as long as the workflow runs."""

    @workflow.init
    def __init__(self, state: ProtectionState) -> None:
        # State exists before any handler runs: after continue-as-new, signals and updates
        # can be delivered in the very first activation, ahead of run().
        self.state: ProtectionState | None = state
        self._published: tuple[object, ...] | None = None

    @workflow.run
    async def run(self, state: ProtectionState) -> None:
        """Provision and sync the shadow, then wait for reasons to act."""
        self._upsert_search_attributes()
        if state.phase in ("provisioning", "syncing"):
            await self._provision()
        while True:
            await workflow.wait_condition(
                lambda: (
                    self._cutover_due()
                    or self._state.unprotect is not None
                    or workflow.info().is_continue_as_new_suggested()
                    or workflow.info().get_current_history_length() > state.continue_as_new_events
                )
            )
            if self._state.unprotect is not None:
                await self._unprotect()
                return
            if self._cutover_due():
                await self._cut_over()
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(self.state)

    # -- steps -----------------------------------------------------------------------------

    async def _provision(self) -> None:
        state = self._state
        self._set_phase("provisioning")
        request = self._shadow_request()
        await workflow.execute_activity(
            "provision_shadow",
            request,
            start_to_close_timeout=timedelta(minutes=60),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=_ACTIVITY_RETRY,
        )
        self._set_phase("syncing")
        state.replication = await workflow.execute_activity(
            "wait_for_sync",
            WaitForSyncRequest(request),
            result_type=ReplicationStatus,
            start_to_close_timeout=timedelta(hours=6),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=_ACTIVITY_RETRY,
        )
        state.shadow_healthy = True
        self._set_phase("protected")
        self._note(f"Shadow of {state.spec.instance_id} is in sync. Protected.")

    async def _cut_over(self) -> None:
        """Run the cutover saga as a child workflow, then record its outcome.

        A completed or forward-recovered cutover leaves the instance without a shadow (the
        former one is now the primary), so the protection reports itself degraded until the
        former primary is recovered as the new shadow.
        """
        state = self._state
        request = state.pending_cutover or CutoverRequest("policy decided to migrate")
        self._set_phase("cutting_over")
        self._note(f"Cutting over: {request.reason}.")
        try:
            result: CutoverResult = await workflow.execute_child_workflow(
                CutoverWorkflow.run,
                CutoverInput(self._shadow_request(), mode="planned", reason=request.reason),
                id=cutover_workflow_id(state.spec.instance_id),
            )
        except ChildWorkflowError as err:
            state.pending_cutover = None
            self._set_phase("protected")
            self._note(f"Cutover failed and changed nothing: {err.cause or err}.")
            return
        state.pending_cutover = None
        if result.outcome == "compensated":
            self._set_phase("protected")
            self._note(f"Cutover compensated; traffic stays on {result.former_primary}.")
            return
        state.cutovers += 1
        state.last_cutover_at = workflow.now().timestamp()
        state.shadow_healthy = False
        self._set_phase("degraded")
        self._note(
            f"Traffic moved from {result.former_primary} to {result.primary} "
            f"({result.outcome}, critical path {result.critical_path_ms:.0f} ms). "
            "No healthy shadow until the former primary is recovered."
        )

    async def _unprotect(self) -> None:
        """Destroy the shadow through Pulumi (router entry, standby, data, slot) and end.

        Traffic never moves: the primary keeps serving, only the shadow goes away."""
        state = self._state
        self._set_phase("unprotecting")
        await workflow.execute_activity(
            "destroy_shadow",
            self._shadow_request(),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=_ACTIVITY_RETRY,
        )
        state.shadow_healthy = False
        self._set_phase("unprotected")
        self._note(f"Shadow of {state.spec.instance_id} destroyed. Protection ended.")
        await workflow.wait_condition(workflow.all_handlers_finished)

    # -- messages --------------------------------------------------------------------------

    @workflow.update
    async def request_cutover(self, request: CutoverRequest) -> str:
        """Ask for a cutover now; answers when it has been scheduled."""
        self._state.pending_cutover = request
        self._note(f"Cutover requested: {request.reason}.")
        return "scheduled"

    @request_cutover.validator
    def _validate_cutover(self, request: CutoverRequest) -> None:
        state = self._state
        if state.paused:
            raise ValueError("protection is paused: resume it first")
        if not state.shadow_healthy:
            raise ValueError(f"no healthy shadow yet (phase {state.phase})")
        if state.phase == "cutting_over" or state.pending_cutover is not None:
            raise ValueError("a cutover is already in progress")
        if state.unprotect is not None:
            raise ValueError("the protection is ending (unprotect requested)")
        if not request.force and self._in_cooldown():
            raise ValueError("in cooldown after the last cutover; use force to override")

    @workflow.update
    def set_policy(self, policy: PolicySpec) -> PolicySpec:
        """Replace the decision policy; returns the policy now in force."""
        self._state.spec.policy = policy
        # The fleet watcher reads each protection's policy from its memo (visibility is free
        # of actions, a query per instance is not).
        if workflow.patched("policy-in-memo"):
            workflow.upsert_memo({"spec": asdict(self._state.spec)})
        self._note(f"Policy set: threshold {policy.threshold}, advisory {policy.advisory}.")
        return policy

    @set_policy.validator
    def _validate_policy(self, policy: PolicySpec) -> None:
        try:
            validate_policy(policy)
        except SpecError as err:
            raise ValueError(str(err)) from err

    @workflow.update
    def unprotect(self, request: UnprotectRequest) -> str:
        """End the protection: answers once scheduled; the workflow completes when the shadow
        is destroyed."""
        self._state.unprotect = request
        self._note(f"Unprotect requested: {request.reason}.")
        return "scheduled"

    @unprotect.validator
    def _validate_unprotect(self, request: UnprotectRequest) -> None:
        state = self._state
        if state.unprotect is not None:
            raise ValueError("unprotect is already in progress")
        if state.phase != "protected" or state.pending_cutover is not None:
            raise ValueError(
                f"cannot unprotect in phase {state.phase}: retry once it is protected"
            )

    @workflow.signal
    def report_risk(self, report: RiskReport) -> None:
        """From the fleet watcher: the latest score, sent only when it matters."""
        state = self._state
        state.latest_risk = report
        if report.decision == "migrate":
            self._ask_for_cutover(
                f"readiness score {report.readiness_score:.0f} crossed the threshold"
            )
        self._upsert_search_attributes()

    @workflow.signal
    def report_event(self, event: ExternalEvent) -> None:
        """An external alert (maintenance, hardware warning...) raises the risk the policy
        sees: ``severity * EVENT_POINTS`` is added to the latest readiness score, and a
        result at or above the threshold asks for a cutover like a high score would."""
        state = self._state
        state.events = [*state.events, event][-HISTORY_KEPT:]
        state.events_seen += 1
        self._note(f"Event {event.kind}: {event.detail}".strip())
        base = state.latest_risk.readiness_score if state.latest_risk else 0.0
        raised = base + max(0.0, min(event.severity, 1.0)) * EVENT_POINTS
        if raised >= state.spec.policy.threshold:
            self._ask_for_cutover(f"event {event.kind} raised the risk to {raised:.0f}")

    @workflow.signal
    def pause(self) -> None:
        """Stop acting on risk (messages are still recorded)."""
        self._state.paused = True
        self._note("Paused by operator.")

    @workflow.signal
    def resume(self) -> None:
        """Act on risk again."""
        self._state.paused = False
        self._note("Resumed by operator.")

    @workflow.query
    def status(self) -> ProtectionStatus:
        """Phase, shadow, lag, latest score and probability, last cutover, next action."""
        state = self._state
        risk = state.latest_risk
        return ProtectionStatus(
            instance_id=state.spec.instance_id,
            phase=state.phase,
            paused=state.paused,
            shadow_healthy=state.shadow_healthy,
            readiness_score=risk.readiness_score if risk else None,
            failure_probability=risk.failure_probability if risk else None,
            lag_bytes=state.replication.lag_bytes if state.replication else None,
            cutovers=state.cutovers,
            last_cutover_at=state.last_cutover_at,
            next_action=self._next_action(),
            log=list(state.log[-10:]),
            events_seen=state.events_seen,
            policy=state.spec.policy,
        )

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _state(self) -> ProtectionState:
        assert self.state is not None, "set by __init__"
        return self.state

    def _ask_for_cutover(self, reason: str) -> None:
        """Schedule an automatic cutover unless the protection may not act now."""
        state = self._state
        may_act = not state.paused and not state.spec.policy.advisory and state.shadow_healthy
        may_act = may_act and state.unprotect is None
        if may_act and state.pending_cutover is None and not self._in_cooldown():
            state.pending_cutover = CutoverRequest(reason)
            self._note(f"Cutover scheduled: {reason}.")
        else:
            self._note(f"Would cut over ({reason}), but the protection may not act now.")

    def _cutover_due(self) -> bool:
        return self._state.pending_cutover is not None and self._state.phase == "protected"

    def _in_cooldown(self) -> bool:
        last = self._state.last_cutover_at
        now = workflow.now().timestamp()
        return last is not None and now - last < self._state.spec.policy.cooldown_s

    def _next_action(self) -> str:
        state = self._state
        if state.phase != "protected":
            return f"finish {state.phase}"
        if state.pending_cutover:
            return "cut over"
        return "advise only" if state.paused or state.spec.policy.advisory else "watch"

    def _shadow_request(self) -> ShadowRequest:
        spec = self._state.spec
        return ShadowRequest(
            spec.instance_id, spec.primary_port, spec.shadow_port, spec.router_port, tier=spec.tier
        )

    def _set_phase(self, phase: str) -> None:
        self._state.phase = phase
        self._upsert_search_attributes()

    def _note(self, sentence: str) -> None:
        workflow.logger.info(sentence)
        self._state.log = [*self._state.log, sentence][-HISTORY_KEPT:]

    def _upsert_search_attributes(self) -> None:
        """Publish instance, platform, phase, tier and readiness band, only when they change
        (each upsert is a billable action, so the score moves in steps)."""
        state = self._state
        score = state.latest_risk.readiness_score if state.latest_risk else 0.0
        band = (
            float(int(score // search_attributes.READINESS_STEP)) * search_attributes.READINESS_STEP
        )
        values = (state.spec.instance_id, state.spec.platform, state.phase, state.spec.tier, band)
        if values == self._published:
            return
        self._published = values
        workflow.upsert_search_attributes(
            [
                search_attributes.INSTANCE.value_set(state.spec.instance_id),
                search_attributes.PLATFORM.value_set(state.spec.platform),
                search_attributes.PHASE.value_set(state.phase),
                search_attributes.TIER.value_set(state.spec.tier),
                search_attributes.READINESS.value_set(band),
            ]
        )
