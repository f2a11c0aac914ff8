"""The protection workflow's contract: its state, its messages and their handlers' definitions.

``InstanceProtectionWorkflow`` (``workflows/protection.py``) implements :class:`ProtectionApi`.
Services that talk to a running protection — the fleet watcher, the CLI, other services —
send messages through the definitions here, by reference::

    await handle.signal(ProtectionApi.report_risk, RiskReport(...))
    await handle.execute_update(ProtectionApi.request_cutover, CutoverRequest(...))

so a renamed handler or a changed payload is a type error. The ``temporal`` CLI sends the
same payloads as JSON (README, "Driving a protection").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

from contracts.agent_tasks import AgentTask
from contracts.policy import Policy, PolicyChange
from contracts.shadow import Capabilities, ReplicationStatus
from contracts.spec import ProtectionSpec

CONTINUE_AS_NEW_EVENTS = 4000
"""Continue as new before the history grows past Temporal's suggested size."""
HISTORY_KEPT = 50
"""Decision log lines kept in state (and carried across continue-as-new)."""

PREDICTION, FAILURE_DETECTION, OPERATOR, EXTERNAL_EVENT = (
    "prediction", "failure-detection", "operator", "external-event")
TRIGGERS = (PREDICTION, FAILURE_DETECTION, OPERATOR, EXTERNAL_EVENT)
"""What can start a cutover; every cutover records and shows its trigger."""

MEMO_SPEC = "spec"
"""Memo key of a protection's spec (plain data, ``contracts.spec.spec_to_dict``), read by the
fleet watcher through visibility (free of actions)."""
MEMO_ROLES = "roles"
"""Memo key of a protection's roles: ``{"serving_node": ..., "original_home": ...}``."""

PHASES = ("provisioning", "syncing", "protected", "cutting_over", "recovering", "degraded",
          "unshadowed", "releasing", "unprotecting", "unprotected")
"""Phases of a protection (the ``ShadowShiftPhase`` search attribute)."""


def standby_node(instance_id: str, serving_node: str) -> str:
    """The shadow's node when ``serving_node`` serves: node names are fixed (the original
    primary is named after the instance, the first shadow ``<id>-shadow``) and swap roles at
    each cutover."""
    shadow = f"{instance_id}-shadow"
    return shadow if (serving_node or instance_id) == instance_id else instance_id


@dataclass
class RiskReport:
    """A scoring result the fleet watcher sends when it matters."""

    readiness_score: float
    """Migration Readiness Score, 0..100."""
    failure_probability: float
    """Model probability of failure within the horizon, 0..1."""
    decision: str
    """The policy's decision: ``hold`` or ``migrate`` (a migration itself is asked for with
    ``request_cutover``; this only informs)."""
    at: float
    """When it was scored (epoch seconds)."""
    node: str = ""
    """The node that was scored (after a cutover, the former shadow)."""
    reason: str = ""
    """The policy's sentence about it."""


@dataclass
class ExternalEvent:
    """An alert from another service: scheduled maintenance, a hardware warning..."""

    kind: str
    """Short name, e.g. ``system-maintenance``, ``instance-retirement``, ``disk-smart``."""
    detail: str = ""
    """Free text for the operator."""
    severity: float = 0.5
    """0..1; the policy turns it into risk (``models.policy.event_risk``)."""


@dataclass
class SyncReport:
    """From the fleet watcher's tier-1 supervisor: it changed the primary's sync mode."""

    degraded: bool
    """Whether commits stopped waiting for the lost shadow (RPO > 0 until restored)."""
    reason: str = ""
    """One plain sentence for the operator."""


@dataclass
class ShadowLoss:
    """From the fleet watcher: the shadow has been lost for good (neither reachable nor
    streaming to its primary for the policy's ``reshadow_after_s``)."""

    serving_node: str
    """The node the watcher saw serving: the lost shadow is the other one (a report about
    roles that have changed since is stale and ignored)."""
    lost_for_s: float
    """How long it has been neither reachable nor streaming."""
    reason: str = ""
    """One plain sentence: what the watcher saw."""


@dataclass
class CutoverRequest:
    """A request to move traffic now, from an operator, a service or ShadowShift itself."""

    reason: str = "operator request"
    """Why, for the record."""
    force: bool = False
    """Skip the cooldown check (never skips the health checks)."""
    emergency: bool = False
    """The primary failed (or is failing) without warning: fence it at the router and move
    traffic to the shadow without its cooperation, losing nothing acknowledged in tier 1
    (``mode="emergency"`` of the cutover). Skips the cooldown; never the shadow's checks."""
    trigger: str = OPERATOR
    """What asked: ``prediction`` (the fleet watcher's policy: counted as a false migration
    if the primary then stays healthy), ``failure-detection``, ``operator`` or
    ``external-event``."""
    evidence: FailureEvidence | None = None
    """``failure-detection`` only: what the failure detector saw."""


MAX_REASON_CHARS = 1000
"""Longest ``reason`` a cutover or unprotect request may give: it is copied into the
protection's log, its state and the cutover's record; a megabyte of it would ride along in
every continue-as-new."""


def reason_problem(reason: object) -> str | None:
    """Why ``reason`` cannot be recorded (naming the field), or ``None`` if it can."""
    if not isinstance(reason, str):
        return f"reason: expected a string, got {type(reason).__name__}"
    if len(reason) > MAX_REASON_CHARS:
        return f"reason: {len(reason)} characters; at most {MAX_REASON_CHARS}"
    return None


QUORUM = 2
"""Vantage points that must see the serving node down before it is failed over: one observer
cut off from a healthy primary (the control worker, the router's health check, the agent) can
never trigger a failover on its own."""


@dataclass
class FailureEvidence:
    """What the failure detector saw of a serving node it asks to fail over."""

    down: list[str]
    """Vantage points that see it down (``control``, ``router``, ``agent``...)."""
    up: list[str] = field(default_factory=list)
    """Vantage points that still see it answer."""
    suspected_at: float = 0.0
    """Epoch seconds of the first observation that saw it down."""
    confirm: AgentTask | None = None
    """With fewer than :data:`QUORUM` down: the probe that asks the node's agent (its vote
    decides); ``None`` when the platform has no other vantage point to ask."""


@dataclass
class UnprotectRequest:
    """An operator's request to end the protection and destroy the shadow."""

    reason: str = "operator request"
    """Why, for the record."""


@dataclass
class ShadowGrant:
    """The shadow planner's word on one instance's shadow (tier 3 without a standing one)."""

    wanted: bool
    """Provision (True) or release (False) the shadow."""
    reason: str = ""
    """One sentence from the planner."""


@dataclass
class LastCutover:
    """The most recent cutover, as the status and the Web UI show it."""

    at: float
    """When it finished (workflow clock, epoch seconds)."""
    trigger: str
    """What asked for it (:data:`TRIGGERS`)."""
    reason: str
    """The request's reason."""
    outcome: str
    """``completed``, ``promoted_unverified``, ``compensated`` or ``refused``."""
    former_primary: str = ""
    """Node that served before."""
    primary: str = ""
    """Node that serves after."""


@dataclass
class ProtectionState:
    """Everything the workflow knows; handed over intact on continue-as-new."""

    spec: ProtectionSpec
    """What is protected and how."""
    phase: str = "provisioning"
    """One of :data:`PHASES`."""
    paused: bool = False
    """Paused protections never act on their own."""
    shadow_healthy: bool = False
    """Whether the shadow reached its tier's sync bound."""
    latest_risk: RiskReport | None = None
    """Most recent scoring result."""
    events: list[ExternalEvent] = field(default_factory=list)
    """Recent external alerts."""
    pending_cutover: CutoverRequest | None = None
    """A cutover that was asked for and has not run yet."""
    last_cutover_at: float | None = None
    """When the last cutover finished (workflow time, epoch seconds): the cooldown's clock."""
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
    serving_node: str = ""
    """Node that is the primary now (empty: the original); every cutover swaps it, and every
    activity request carries it, so the shadow stack follows the roles."""
    original_home: str = ""
    """Where the original primary's data lives, learned while it answers (needed to rewind
    or retire it once it is the standby)."""
    recovering: str = ""
    """Former primary being recovered (phase ``recovering``)."""
    recoveries: list[str] = field(default_factory=list)
    """How each recovery ended (``rejoined`` or ``retired``), oldest first."""
    shadow_wanted: bool | None = None
    """Without a standing shadow: the shadow planner's last word (None: nothing yet)."""
    sync_degraded: bool = False
    """Tier 1: commits do not wait for the shadow now (RPO > 0), as last reported."""
    last_cutover: LastCutover | None = None
    """The most recent cutover or refused attempt."""
    first_run_id: str = ""
    """Run id of the protection's first run (outcome record ids name it: the workflow id
    repeats when an instance is protected anew)."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    """What the platform can do, as its provisioning said."""
    pending_reshadow: ShadowLoss | None = None
    """A lost shadow to make anew on a spare host (``report_shadow_lost``)."""
    lost_hosts: list[str] = field(default_factory=list)
    """Hosts whose shadow was lost for good, oldest first: never used as a spare again."""


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
    policy: Policy | None = None
    primary_node: str = ""
    """Node that serves now."""
    recoveries: list[str] = field(default_factory=list)
    """How each recovery of a former primary ended."""
    sync_degraded: bool = False
    """Tier 1: commits do not wait for the lost shadow now (RPO > 0)."""
    last_cutover: LastCutover | None = None
    """The most recent cutover and what triggered it."""


class ProtectionApi:
    """The messages a protection takes (``InstanceProtectionWorkflow`` implements them).

    Updates answer once the request is recorded and are validated first (a bad request is
    refused with the reason, nothing recorded); signals are fire-and-forget events.
    """

    @workflow.update
    async def request_cutover(self, request: CutoverRequest) -> str:
        """Ask for a cutover now; answers ``scheduled`` once it is.

        Refused while paused, without a healthy shadow, during another cutover, in cooldown
        (unless ``force``; the refusal's details carry ``{"retry_after_s": seconds}``), or in
        emergency while tier 1 is relaxed (unless ``force``)."""
        raise NotImplementedError

    @workflow.update
    def set_policy(self, change: PolicyChange) -> Policy:
        """Change the decision policy: the fields given replace the current ones, the others
        stay; returns the policy now in force."""
        raise NotImplementedError

    @workflow.update
    def unprotect(self, request: UnprotectRequest) -> str:
        """End the protection: answers once scheduled; the workflow completes when the shadow
        is destroyed."""
        raise NotImplementedError

    @workflow.signal
    def report_risk(self, report: RiskReport) -> None:
        """From the fleet watcher: the latest score, sent only when it matters."""
        raise NotImplementedError

    @workflow.signal
    def report_event(self, event: ExternalEvent) -> None:
        """An external alert (maintenance, hardware warning...): the policy turns its severity
        into risk, and enough risk asks for a cutover."""
        raise NotImplementedError

    @workflow.signal
    def report_sync(self, report: SyncReport) -> None:
        """From the fleet watcher: tier 1's synchronous mode was relaxed or required again."""
        raise NotImplementedError

    @workflow.signal
    def report_shadow_lost(self, loss: ShadowLoss) -> None:
        """From the fleet watcher: the shadow was lost for good; make it anew on a spare
        host, or stay ``degraded`` until it returns."""
        raise NotImplementedError

    @workflow.signal
    def set_shadow(self, grant: ShadowGrant) -> None:
        """From the fleet's shadow planner: provision or release a risk-triggered shadow."""
        raise NotImplementedError

    @workflow.signal
    def pause(self) -> None:
        """Stop acting on risk (messages are still recorded)."""
        raise NotImplementedError

    @workflow.signal
    def resume(self) -> None:
        """Act on risk again."""
        raise NotImplementedError

    @workflow.query
    def status(self) -> ProtectionStatus:
        """Phase, shadow, lag, latest score and probability, last cutover, next action."""
        raise NotImplementedError
