"""The feedback loop's outcome contract: records of cutovers and near misses, evidence about
what happened to the instance afterwards, and the activities that store and resolve them."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from contracts.shadow import PlatformRequest

DEFAULT_HORIZON_S = 7200.0
"""The shipped model's horizon: an outcome looks this far past the decision."""
KINDS = ("cutover", "refused", "near_miss")
"""Record kinds."""
STATUSES = ("healthy", "degraded", "failed")
"""Observation statuses, from best to worst."""


@dataclass
class RecordOutcomeInput:
    """A cutover or a refused cutover, as the protection workflow saw it."""

    record_id: str
    """Stable across retries, e.g. ``<workflow id>:<first run id>:cutover:<n>``."""
    instance: PlatformRequest
    """The protected instance, with its roles at the decision."""
    kind: str
    """``cutover``, ``refused`` or ``near_miss``."""
    at: float
    """Decision time (workflow clock), epoch seconds."""
    reason: str = ""
    """Why it happened (or did not)."""
    readiness_score: float | None = None
    """Latest score the protection knew."""
    failure_probability: float | None = None
    """Latest probability the protection knew."""
    probe_node: str = ""
    """The node whose fate decides the outcome, probed where its platform can; "" = nothing
    to probe (evidence must be reported: a cutover stops its former primary on purpose)."""
    horizon_s: float = DEFAULT_HORIZON_S
    """How long after ``at`` the outcome is watched."""
    policy_decided: bool = False
    """A cutover the watcher's policy asked for because the score crossed the threshold (the
    model's call): if the instance then stays healthy it counts as a false migration."""
    trigger: str = ""
    """What asked for the cutover (``contracts.protection.TRIGGERS``)."""


@dataclass
class OutcomeEvidence:
    """Something known about an instance's health, from outside the probes."""

    instance: PlatformRequest
    """The instance the open records are about, with its roles now."""
    status: str
    """``healthy``, ``degraded`` or ``failed``."""
    at: float
    """When it was true, epoch seconds."""
    source: str = "report"
    """Who says so, e.g. ``recovery``."""
    detail: str = ""
    """One sentence."""
    final: bool = False
    """The instance's endpoint is going away on purpose (e.g. retired after a cutover):
    stop probing it, so its closed port is not taken for a failure."""
    probe_node: str = ""
    """Probe the open records of the instance at this node from now on (e.g. a former
    primary that rejoined as the shadow and can be watched again)."""


@dataclass
class ObserveOutcomesResult:
    """What one probe round saw."""

    probed: int
    """Records whose endpoint was probed."""
    statuses: dict[str, int]
    """Observations by status."""


@dataclass
class ResolveOutcomesInput:
    """Resolve records whose horizon ended before ``now`` (None: the activity's clock)."""

    now: float | None = None


class OutcomeActivities:
    """Store outcome records and evidence, probe and resolve them."""

    @activity.defn
    def record_outcome(self, request: RecordOutcomeInput) -> bool:
        """Store a cutover, refusal or near miss; returns False if it was already stored."""
        raise NotImplementedError

    @activity.defn
    def report_outcome_evidence(self, evidence: OutcomeEvidence) -> int:
        """Attach evidence to every open record of the instance; returns how many."""
        raise NotImplementedError

    @activity.defn
    def observe_outcomes(self) -> ObserveOutcomesResult:
        """Probe the endpoint of every open record once."""
        raise NotImplementedError

    @activity.defn
    def resolve_outcomes(self, request: ResolveOutcomesInput) -> dict[str, int]:
        """Decide outcomes whose horizon has passed; counts by outcome."""
        raise NotImplementedError
