"""``InstanceProtectionWorkflow``: one long-running workflow per protected instance.

It owns the instance's lifecycle (and is the only writer of its Pulumi stack, so the workflow
id doubles as the stack's mutex): provisioning → syncing → protected, then cutting over when
the fleet watcher's policy, a failure detector, an external event or an operator asks, then
recovering the former primary as the new shadow (rewound, or retired and re-seeded) and
protected again, ready for a cutover back. It keeps no timers while protected: watching is
done by the fleet watcher, which tells it only what matters, so an idle protection costs no
Temporal actions at all.

Started with the spec alone (``shadowshift protect``, or ``temporal workflow start --input-file
spec.json``), it validates the spec in its first step and fails at once, naming the field,
when it is invalid. Continued as new, it receives its state as well.

This module holds the loop, the messages and the status; the phases that run activities are
in ``protection_phases`` (provision, cut over, unprotect), ``recovery``, ``shadow_on_demand``
and ``reshadow``; the Web UI's summary and details in ``protection_details``. Messages
(``contracts.protection.ProtectionApi``): updates ``request_cutover``, ``set_policy`` and
``unprotect`` (validated before anything is recorded), signals ``report_risk``,
``report_event``, ``report_sync``, ``report_shadow_lost``, ``set_shadow``, ``pause``,
``resume``, query ``status``.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from contracts import search_attributes
from contracts.errors import COOLDOWN, INVALID_SPEC, NOT_CONFIRMED
from contracts.policy import Policy, PolicyChange, PolicyError, validate_policy
from contracts.protection import (
    EXTERNAL_EVENT,
    HISTORY_KEPT,
    MEMO_ROLES,
    MEMO_SPEC,
    QUORUM,
    TRIGGERS,
    CutoverRequest,
    ExternalEvent,
    ProtectionApi,
    ProtectionState,
    ProtectionStatus,
    RiskReport,
    SyncReport,
    UnprotectRequest,
    reason_problem,
)
from contracts.shadow import PlatformRequest
from contracts.spec import (
    ProtectionSpec,
    SpecError,
    spec_from_dict,
    spec_to_dict,
    validate_spec,
)
from models.policy import event_risk
from workflows.agent_tasks import agent_vote
from workflows.protection_details import current_details
from workflows.protection_phases import ProtectionPhases
from workflows.recovery import RecoveryPhase
from workflows.reshadow import ReshadowPhase
from workflows.shadow_on_demand import UNSHADOWED, ShadowOnDemand


def _typed(spec: ProtectionSpec | dict[str, Any]) -> ProtectionSpec:
    """The spec a first run was started with. A start passes one argument where ``run`` has
    two parameters, and the SDK then decodes without type hints: the spec arrives as plain
    JSON (from ``shadowshift protect`` as from ``temporal workflow start --input-file``), and
    is read here, unknown fields and wrong types kept as ``decode_errors`` for the first step
    to refuse by name. A continued run gets both arguments, typed."""
    if isinstance(spec, ProtectionSpec):
        return spec
    if not isinstance(spec, dict):
        return ProtectionSpec("", decode_errors=[f"the spec: expected a mapping of fields, got "
                                                 f"{type(spec).__name__}"])
    return spec_from_dict(spec, strict=False)


# _OVERRIDES: the SDK's update descriptor is generic in the class that owns it, so for mypy an
# update never matches the one it overrides; ``@workflow.defn`` checks that each override of
# a ``ProtectionApi`` handler is a handler of the same kind and name when the class is defined.


@workflow.defn
class InstanceProtectionWorkflow(ProtectionPhases, RecoveryPhase, ShadowOnDemand, ReshadowPhase,
                                 ProtectionApi):
    """Protect one instance for as long as the workflow runs (phases in the mixins)."""

    @workflow.init
    def __init__(self, spec: ProtectionSpec, resume: ProtectionState | None = None) -> None:
        # State exists before any handler runs: after continue-as-new, signals and updates
        # can be delivered in the very first activation, ahead of run().
        self.state: ProtectionState = resume or ProtectionState(spec=_typed(spec))
        self._published: tuple[object, ...] | None = None
        self._confirming = False
        """A failover request is waiting for the agent's vote (no second one meanwhile)."""

    @workflow.run
    async def run(self, spec: ProtectionSpec, resume: ProtectionState | None = None) -> None:
        """Validate (first run), provision and sync the shadow, then wait for reasons to act."""
        state = self._state
        if resume is None:
            try:
                validate_spec(state.spec)
            except SpecError as err:
                workflow.logger.warning("Refusing protection %s: %s", workflow.info().workflow_id,
                                        err)
                raise ApplicationError(f"invalid spec: {err}", type=INVALID_SPEC,
                                       non_retryable=True) from None
            state.first_run_id = workflow.info().run_id
        self._publish()
        self._upsert_search_attributes()
        self._show()
        if state.phase == "provisioning" and self._starts_unshadowed():
            self._set_phase(UNSHADOWED)  # tier 3 without a standing shadow: on demand
        elif state.phase in ("provisioning", "syncing"):
            await self._provision()
        elif state.phase == "recovering" and state.recovering:
            await self._recover()
        while True:
            await workflow.wait_condition(
                lambda: (
                    self._cutover_due()
                    or self._shadow_change_due()
                    or self._reshadow_due()
                    or self._state.unprotect is not None
                    or workflow.info().is_continue_as_new_suggested()
                    or workflow.info().get_current_history_length()
                    > self._state.continue_as_new_events
                )
            )
            if self._state.unprotect is not None:
                await self._unprotect()
                return
            if self._cutover_due():
                await self._cut_over()
                continue
            if self._shadow_change_due():
                await self._apply_shadow_change()
                continue
            if self._reshadow_due():
                await self._reshadow()
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(args=[self._state.spec, self._state])

    # -- messages --------------------------------------------------------------------------

    @workflow.update
    async def request_cutover(  # type: ignore[override]  # see _OVERRIDES
        self, request: CutoverRequest) -> str:
        """Ask for a cutover now; answers when it has been scheduled.

        A failure detector's request whose evidence lacks a quorum of vantage points first
        asks the node's agent (a short probe through the host's queue): if the agent sees
        the primary answer, the request is refused and nothing changes."""
        evidence = request.evidence
        if evidence is not None and len(evidence.down) < QUORUM and evidence.confirm:
            self._confirming = True
            try:
                agrees, seen = await agent_vote(evidence.confirm)
            finally:
                self._confirming = False
            if not agrees:
                self._note(f"Failover not confirmed: {seen} (down: "
                           f"{', '.join(evidence.down)}; up: {', '.join(evidence.up)}).")
                raise ApplicationError(
                    f"not failing over: {seen}; only {', '.join(evidence.down)} saw the "
                    f"primary down (a quorum is {QUORUM})", type=NOT_CONFIRMED,
                    non_retryable=True)
            request.reason = f"{request.reason}; the agent agrees: {seen}"
        self._state.pending_cutover = request
        self._note(f"Cutover requested ({request.trigger}): {request.reason}.")
        return "scheduled"

    @request_cutover.validator
    def _validate_cutover(self, request: CutoverRequest) -> None:
        state = self._state
        if request.trigger not in TRIGGERS:
            raise ValueError(f"trigger {request.trigger!r}: use one of {', '.join(TRIGGERS)}")
        if problem := reason_problem(request.reason):
            raise ValueError(problem)
        if state.paused:
            raise ValueError("protection is paused: resume it first")
        left = self._cooldown_left()
        if not (request.force or request.emergency) and left > 0:
            # Before the shadow's health: the caller learns how long to wait (a recovery
            # after the last cutover also leaves no healthy shadow for a while).
            raise ApplicationError(
                f"in cooldown after the last cutover for {left:.0f} s more; use force to "
                "override", {"retry_after_s": left}, type=COOLDOWN, non_retryable=True)
        if not state.shadow_healthy:
            raise ValueError(f"no healthy shadow yet (phase {state.phase})")
        if state.phase == "cutting_over" or state.pending_cutover is not None:
            raise ValueError("a cutover is already in progress")
        if self._confirming:
            raise ValueError("a failover is being confirmed with the primary's agent")
        if state.unprotect is not None:
            raise ValueError("the protection is ending (unprotect requested)")
        if request.emergency and state.sync_degraded and not request.force:
            raise ValueError("synchronous replication is relaxed (the shadow was lost), so the "
                             "shadow may lack acknowledged writes; add force to fail over "
                             "anyway and accept that loss")

    @workflow.update
    def set_policy(self, change: PolicyChange) -> Policy:  # type: ignore[override]
        """Change the decision policy: the fields given replace the current ones, the others
        stay; returns the policy now in force."""
        policy = change.applied_to(self._state.spec.policy)
        self._state.spec.policy = policy
        self._publish()  # the fleet watcher reads the policy from the memo (free to read)
        self._note(f"Policy set: threshold {policy.threshold:g}, advisory {policy.advisory}.")
        return policy

    @set_policy.validator
    def _validate_policy(self, change: PolicyChange) -> None:
        try:
            validate_policy(change.applied_to(self._state.spec.policy))
        except PolicyError as err:
            raise ValueError(str(err)) from err

    @workflow.update
    def unprotect(self, request: UnprotectRequest) -> str:  # type: ignore[override]
        """End the protection: answers once scheduled; the workflow completes when the shadow
        is destroyed."""
        self._state.unprotect = request
        self._note(f"Unprotect requested: {request.reason}.")
        return "scheduled"

    @unprotect.validator
    def _validate_unprotect(self, request: UnprotectRequest) -> None:
        state = self._state
        if problem := reason_problem(request.reason):
            raise ValueError(problem)
        if state.unprotect is not None:
            raise ValueError("unprotect is already in progress")
        # Degraded (no shadow could be made after a cutover) is the end of the road for the
        # protection: unprotect is its way out where the stack never holds the serving
        # primary (the platform says so at provisioning).
        allowed = ("protected", UNSHADOWED) + (
            ("degraded",) if state.capabilities.unprotect_when_degraded else ())
        if state.phase not in allowed or state.pending_cutover is not None:
            raise ValueError(
                f"cannot unprotect in phase {state.phase}: retry once it is protected"
            )

    @workflow.signal
    def report_risk(self, report: RiskReport) -> None:
        """From the fleet watcher: the latest score, sent only when it matters. A migration
        itself comes as ``request_cutover``; a recommendation of an advisory policy is
        only noted."""
        state = self._state
        state.latest_risk = report
        if report.decision == "migrate":
            self._note(f"Readiness score {report.readiness_score:.0f}: {report.reason}")
        self._upsert_search_attributes()
        self._show()

    @workflow.signal
    def report_event(self, event: ExternalEvent) -> None:
        """An external alert (maintenance, hardware warning...): the policy turns its severity
        into risk over the latest readiness score, and a result at or above the threshold
        asks for a cutover like a high score would."""
        state = self._state
        state.events = [*state.events, event][-HISTORY_KEPT:]
        state.events_seen += 1
        self._note(f"Event {event.kind}: {event.detail}".strip())
        latest = state.latest_risk.readiness_score if state.latest_risk else None
        raised, migrate = event_risk(latest, event.severity, state.spec.policy)
        if migrate:
            self._ask_for_cutover(f"event {event.kind} raised the risk to {raised:.0f}",
                                  EXTERNAL_EVENT)

    @workflow.signal
    def report_sync(self, report: SyncReport) -> None:
        """From the fleet watcher: tier 1's synchronous mode was relaxed (the shadow was lost
        longer than the spec allows commits to wait) or required again."""
        state = self._state
        if state.phase != "protected":
            return  # about the roles before a cutover: recovery's stack sets the mode anew
        if report.degraded != state.sync_degraded:
            mode = "relaxed" if report.degraded else "restored"
            self._note(f"Synchronous replication {mode}: {report.reason}.")
        state.sync_degraded = report.degraded

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
            primary_node=state.serving_node or state.spec.instance_id,
            recoveries=list(state.recoveries),
            sync_degraded=state.sync_degraded,
            last_cutover=state.last_cutover,
        )

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _state(self) -> ProtectionState:
        return self.state

    def _ask_for_cutover(self, reason: str, trigger: str) -> None:
        """Schedule an automatic cutover unless the protection may not act now."""
        state = self._state
        may_act = not state.paused and not state.spec.policy.advisory and state.shadow_healthy
        may_act = may_act and state.unprotect is None and self._cooldown_left() <= 0
        if may_act and state.pending_cutover is None:
            state.pending_cutover = CutoverRequest(reason, trigger=trigger)
            self._note(f"Cutover scheduled ({trigger}): {reason}.")
        else:
            self._note(f"Would cut over ({reason}), but the protection may not act now.")

    def _cutover_due(self) -> bool:
        return self._state.pending_cutover is not None and self._state.phase == "protected"

    def _cooldown_left(self) -> float:
        """Seconds of cooldown left after the last cutover, on the workflow's clock (the only
        clock the cooldown is measured on)."""
        last = self._state.last_cutover_at
        if last is None:
            return 0.0
        return max(0.0, last + self._state.spec.policy.cooldown_s - workflow.now().timestamp())

    def _next_action(self) -> str:
        state = self._state
        if state.phase == "recovering":
            verb = "resume to recover" if state.paused else "recover"
            return f"{verb} {state.recovering} as the shadow"
        if state.phase == "degraded":
            return "wait for the shadow to be back in sync (or unprotect)"
        if state.phase == UNSHADOWED:
            return "watch; a shadow is provisioned when the risk rises"
        if state.phase != "protected":
            return f"finish {state.phase}"
        if state.pending_cutover:
            return "cut over"
        return "advise only" if state.paused or state.spec.policy.advisory else "watch"

    def _request(self) -> PlatformRequest:
        """The platform request every activity and the cutover child get: the spec and the
        roles now."""
        state = self._state
        return PlatformRequest(state.spec, serving_node=state.serving_node,
                               original_home=state.original_home)

    def _set_phase(self, phase: str) -> None:
        self._state.phase = phase
        self._upsert_search_attributes()
        self._show()

    def _note(self, sentence: str) -> None:
        workflow.logger.info(sentence)
        self._state.log = [*self._state.log, sentence][-HISTORY_KEPT:]
        self._show()

    def _show(self) -> None:
        """The Web UI's current details (free: no action, no history event)."""
        workflow.set_current_details(current_details(self._state))

    def _publish(self) -> None:
        """Keep the memo the fleet watcher reads (spec and roles) current; an upsert is a
        billable action, so only when it changed (a start without a memo, ``set_policy``, a
        cutover)."""
        state = self._state
        roles = {"serving_node": state.serving_node, "original_home": state.original_home}
        # Compared as specs, not as dicts: a field added to the spec since the memo was
        # written (with its default) must not count as a change, or a new version would
        # upsert where the recorded history did not (a nondeterminism on replay).
        memo_spec = workflow.memo_value(MEMO_SPEC, None)
        same_spec = isinstance(memo_spec, dict) and \
            spec_from_dict(memo_spec, strict=False) == state.spec
        if not same_spec or workflow.memo_value(MEMO_ROLES, None) != roles:
            workflow.upsert_memo({MEMO_SPEC: spec_to_dict(state.spec), MEMO_ROLES: roles})

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

