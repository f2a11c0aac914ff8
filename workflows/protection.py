"""``InstanceProtectionWorkflow``: one long-running workflow per protected instance.

It owns the instance's lifecycle (and is the only writer of its Pulumi stack, so the workflow
id doubles as the stack's mutex): provisioning → syncing → protected, then cutting over when
the policy or an operator asks, then recovering the former primary as the new shadow (rewound,
or retired and re-seeded) and protected again, ready for a cutover back. It keeps no timers
while protected: watching is done by the fleet watcher, which signals ``report_risk`` only
when something changes, so an idle protection costs no Temporal actions at all.

Which node serves is part of the state (``serving_node``) and of every activity request, so
the shadow stack and every check follow the roles across continue-as-new and worker crashes.
This module holds the loop, the messages and the status; the phases that run activities are
in ``protection_phases`` (provision, cut over, unprotect) and ``recovery``, the data types in
``protection_state``.

Messages: updates ``request_cutover``, ``set_policy`` and ``unprotect`` (validated before
anything is recorded), signals ``report_risk``, ``report_event``, ``report_sync``, ``pause``,
``resume``, query ``status``.
"""

from __future__ import annotations

from dataclasses import asdict

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.shadow import ShadowRequest
    from workflows import search_attributes
    from workflows.protection_phases import ProtectionPhases
    from workflows.protection_spec import (
        PolicyChange,
        PolicySpec,
        SpecError,
        shadow_platform_spec,
        validate_policy,
    )
    from workflows.protection_state import (
        CONTINUE_AS_NEW_EVENTS,
        EVENT_POINTS,
        HISTORY_KEPT,
        CutoverRequest,
        ExternalEvent,
        ProtectionState,
        ProtectionStatus,
        RiskReport,
        SyncReport,
        UnprotectRequest,
    )
    from workflows.recovery import RecoveryPhase
    from workflows.shadow_on_demand import UNSHADOWED, ShadowOnDemand

__all__ = [
    "CONTINUE_AS_NEW_EVENTS",
    "CutoverRequest",
    "ExternalEvent",
    "InstanceProtectionWorkflow",
    "ProtectionState",
    "ProtectionStatus",
    "RiskReport",
    "SyncReport",
    "UnprotectRequest",
]


@workflow.defn
class InstanceProtectionWorkflow(ProtectionPhases, RecoveryPhase, ShadowOnDemand):
    """Protect one instance for as long as the workflow runs (phases in the mixins)."""

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
            if self._shadow_change_due():
                await self._apply_shadow_change()
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(self.state)

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
        if request.emergency and state.sync_degraded and not request.force:
            raise ValueError("synchronous replication is relaxed (the shadow was lost), so the "
                             "shadow may lack acknowledged writes; add force to fail over "
                             "anyway and accept that loss")
        if not (request.force or request.emergency) and self._in_cooldown():
            raise ValueError("in cooldown after the last cutover; use force to override")
        if request.by_policy:
            raise ValueError("by_policy is the protection's own mark for score-driven "
                             "cutovers; leave it unset")

    @workflow.update
    def set_policy(self, change: PolicyChange) -> PolicySpec:
        """Change the decision policy: the fields given replace the current ones, the others
        stay; returns the policy now in force."""
        if workflow.patched("policy-merge"):
            policy = change.applied_to(self._state.spec.policy)
        else:  # recorded before the merge: the update replaced the whole policy
            policy = change.applied_to(PolicySpec())
        self._state.spec.policy = policy
        # The fleet watcher reads each protection's policy from its memo (visibility is free
        # of actions, a query per instance is not).
        if workflow.patched("policy-in-memo"):
            workflow.upsert_memo({"spec": asdict(self._state.spec)})
        self._note(f"Policy set: threshold {policy.threshold}, advisory {policy.advisory}.")
        return policy

    @set_policy.validator
    def _validate_policy(self, change: PolicyChange) -> None:
        try:
            validate_policy(change.applied_to(self._state.spec.policy))
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
        # Degraded (no shadow could be made after a cutover) is the end of the road for the
        # protection: unprotect is its way out on the local platform, where the stack holds
        # only the standby's side. On AWS the stack's instance may be the serving primary then.
        allowed = ("protected", UNSHADOWED) + (("degraded",) if state.spec.platform == "local"
                                               else ())
        if state.phase not in allowed or state.pending_cutover is not None:
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
                f"readiness score {report.readiness_score:.0f} crossed the threshold",
                by_policy=True,
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
        )

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _state(self) -> ProtectionState:
        assert self.state is not None, "set by __init__"
        return self.state

    def _ask_for_cutover(self, reason: str, *, by_policy: bool = False) -> None:
        """Schedule an automatic cutover unless the protection may not act now."""
        state = self._state
        may_act = not state.paused and not state.spec.policy.advisory and state.shadow_healthy
        may_act = may_act and state.unprotect is None
        if may_act and state.pending_cutover is None and not self._in_cooldown():
            state.pending_cutover = CutoverRequest(reason, by_policy=by_policy)
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
        if state.phase == "recovering":
            verb = "resume to recover" if state.paused else "recover"
            return f"{verb} {state.recovering} as the shadow"
        if state.phase == UNSHADOWED:
            return "watch; a shadow is provisioned when the risk rises"
        if state.phase != "protected":
            return f"finish {state.phase}"
        if state.pending_cutover:
            return "cut over"
        return "advise only" if state.paused or state.spec.policy.advisory else "watch"

    def _shadow_request(self) -> ShadowRequest:
        state = self._state
        spec = state.spec
        return ShadowRequest(
            spec.instance_id, spec.primary_port, spec.shadow_port, spec.router_port,
            tier=spec.tier, serving_node=state.serving_node, original_home=state.original_home,
            # Every activity and the cutover child build their platform from these two.
            platform=spec.platform, platform_spec=shadow_platform_spec(spec),
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
