"""State and message types of ``InstanceProtectionWorkflow`` (kept apart so the workflow
module reads like the operational flow).

Everything here is plain data: the state is handed to continue-as-new intact, the messages
are what the ``temporal`` CLI sends as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from infra.platform import ReplicationStatus
    from workflows.protection_spec import PolicySpec, ProtectionSpec

CONTINUE_AS_NEW_EVENTS = 4000
"""Continue as new before the history grows past Temporal's suggested size."""
HISTORY_KEPT = 50
"""Decision log lines kept in state (and carried across continue-as-new)."""
EVENT_POINTS = 50.0
"""Readiness points an external event of severity 1.0 adds to the latest score."""


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
class SyncReport:
    """From the fleet watcher's tier-1 supervisor: it changed the primary's sync mode."""

    degraded: bool
    """Whether commits stopped waiting for the lost shadow (RPO > 0 until restored)."""
    reason: str = ""
    """One plain sentence for the operator."""


@dataclass
class CutoverRequest:
    """An operator's or service's request to move traffic now."""

    reason: str = "operator request"
    """Why, for the record."""
    force: bool = False
    """Skip the cooldown check (never skips the health checks)."""
    by_policy: bool = False
    """Set by the protection itself when the readiness score crossed the threshold (the
    model's call, counted as a false migration if the primary then stays healthy); refused
    from callers."""
    emergency: bool = False
    """The primary failed (or is failing) without warning: fence it at the router and move
    traffic to the shadow without its cooperation, losing nothing acknowledged in tier 1
    (``mode="emergency"`` of the cutover). Skips the cooldown; never the shadow's checks."""


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
    """provisioning, syncing, protected, cutting_over, recovering (the former primary becomes
    the shadow again), unprotecting, unprotected."""
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
    serving_node: str = ""
    """Node that is the primary now (empty: the original); every cutover swaps it, and every
    activity request carries it, so the shadow stack follows the roles."""
    original_home: str = ""
    """Folder of the original primary's data directory, learned while it answers (needed
    to rewind it or retire it once it is the standby)."""
    recovering: str = ""
    """Former primary being recovered (phase ``recovering``)."""
    recoveries: list[str] = field(default_factory=list)
    """How each recovery ended (``rejoined`` or ``retired``), oldest first."""
    shadow_wanted: bool | None = None
    """Without a standing shadow: the shadow planner's last word (None: nothing yet)."""
    sync_degraded: bool = False
    """Tier 1: commits do not wait for the shadow now (RPO > 0), as last reported."""


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
    primary_node: str = ""
    """Node that serves now."""
    recoveries: list[str] = field(default_factory=list)
    """How each recovery of a former primary ended."""
    sync_degraded: bool = False
    """Tier 1: commits do not wait for the lost shadow now (RPO > 0)."""
