"""Feedback-loop activities: record cutovers and near misses, observe their fate, resolve them.

- ``record_outcome`` (from the protection workflow after a cutover or a refused one):
  idempotent by ``record_id``. A cutover stops the probes of the instance's open records,
  because the cutover itself stops the former primary; the recovery path points them at the
  node again once it has rejoined (``report_outcome_evidence`` with ``probe_port``).
- probing: every 5 minutes the fleet watcher (:meth:`OutcomeRecorder.probe_if_due`, inside
  its long-running activity, so it costs no Temporal action) probes the endpoint of every
  record whose horizon is still open and stores what it saw — down, degraded or healthy
  (:class:`DegradationThresholds` says when a reading counts as degraded); the
  ``observe_outcomes`` activity does the same once, for fleets without a watcher.
- ``report_outcome_evidence``: evidence from elsewhere: the recovery path rejoining a former
  primary healthy, or, before retiring one, what it knows (``failed`` when it did not answer
  or its data is gone) with ``final=True``.
- ``resolve_outcomes``: after the horizon, the worst evidence becomes the outcome.

Near misses come from the fleet watcher, which sees every score: :meth:`OutcomeRecorder.note_risk`
remembers the window behind each reported score and records a near miss when an instance's
score enters the band just below the threshold without a migrate decision, or a refused
cutover when the score is at or above it and the policy still held.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.outcomes_store import KINDS, STATUSES, OutcomeRecord, OutcomeStore
from infra.local.metrics import LocalMetricsCollector
from infra.local.postgres import PgEndpoint
from models.metrics import MetricSample
from workers.observability import count_false_migration

DEFAULT_HORIZON_S = 7200.0
"""The shipped model's horizon: an outcome looks this far past the decision."""
NEAR_MISS_MARGIN = 20.0
"""A hold with a score within this many points under the threshold is a near miss."""
PROBE_INTERVAL_S = 300.0
"""How often the fleet watcher probes the endpoints of open records."""


@dataclass(frozen=True)
class DegradationThresholds:
    """When a probe of a live instance counts as degraded (any one suffices)."""

    cpu_percent: float = 95.0
    """CPU utilisation, %."""
    memory_percent: float = 95.0
    """Memory in use, %."""
    request_latency_ms: float = 500.0
    """A ``SELECT 1`` round trip this slow means the server is struggling."""
    disk_latency_ms: float = 200.0
    """Mean disk I/O latency."""
    error_rate: float = 0.05
    """Fraction of failed transactions."""


@dataclass
class RecordOutcomeInput:
    """A cutover or a refused cutover, as the protection workflow saw it."""

    record_id: str
    """Stable across retries, e.g. ``<workflow id>:<first run id>:cutover:<n>``."""
    instance_id: str
    """The protected instance."""
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
    host: str | None = "127.0.0.1"
    """The endpoint whose fate decides the outcome (for a cutover: the former primary)."""
    port: int | None = None
    """Its port; None = nothing to probe (evidence must be reported)."""
    horizon_s: float = DEFAULT_HORIZON_S
    """How long after ``at`` the outcome is watched."""
    policy_decided: bool = False
    """A cutover the policy made because the score crossed the threshold (the model's call):
    if the instance then stays healthy it counts as a false migration."""


@dataclass
class OutcomeEvidence:
    """Something known about an instance's health, from outside the probes."""

    instance_id: str
    """The instance the open records are about."""
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
    probe_port: int | None = None
    """Probe the open records of the instance here from now on (e.g. a former primary that
    rejoined as the shadow and can be watched again)."""
    probe_host: str = "127.0.0.1"
    """Host of ``probe_port``."""


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


def classify(sample: MetricSample, limits: DegradationThresholds) -> tuple[str, str]:
    """A probe reading → (status, why)."""
    if sample.request_latency_ms is None:
        return "failed", "not answering"
    for name in ("cpu_percent", "memory_percent", "request_latency_ms", "disk_latency_ms",
                 "error_rate"):
        value = getattr(sample, name)
        limit = getattr(limits, name)
        if value is not None and math.isfinite(value) and value >= limit:
            return "degraded", f"{name} {value:.3g} >= {limit:g}"
    return "healthy", "answering within limits"


class OutcomeRecorder:
    """The fleet watcher's side of the feedback loop (plain method calls, no activity)."""

    def __init__(self, store: OutcomeStore, margin: float = NEAR_MISS_MARGIN,
                 horizon_s: float = DEFAULT_HORIZON_S,
                 limits: DegradationThresholds | None = None,
                 probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self._store = store
        self._margin = margin
        self._horizon_s = horizon_s
        self._limits = limits or DegradationThresholds()
        self._probe_interval_s = probe_interval_s
        self._next_probe = 0.0
        # One collector per record, so CPU and disk rates have a previous reading.
        self._collectors: dict[str, LocalMetricsCollector] = {}
        self._probing = threading.Lock()  # the watcher's thread and the activity's

    def probe_if_due(self) -> ObserveOutcomesResult | None:
        """Probe open records if ``probe_interval_s`` has passed since the last round (the
        fleet watcher calls this every sample: probing there costs no Temporal action)."""
        if time.monotonic() < self._next_probe:
            return None
        self._next_probe = time.monotonic() + self._probe_interval_s
        return self.probe_open_records()

    def probe_open_records(self) -> ObserveOutcomesResult:
        """Probe the endpoint of every record whose horizon is still open, once."""
        with self._probing:
            return self._probe_open_records()

    def _probe_open_records(self) -> ObserveOutcomesResult:
        statuses = {name: 0 for name in STATUSES}
        open_records = [r for r in self._store.pending(time.time()) if r.port]
        for record in open_records:
            collector = self._collectors.get(record.record_id)
            if collector is None:
                collector = LocalMetricsCollector(
                    record.instance_id, PgEndpoint(host=record.host or "127.0.0.1",
                                                   port=int(record.port or 0)))
                self._collectors[record.record_id] = collector
            sample = collector.sample()
            status, detail = classify(sample, self._limits)
            self._store.observe(record.record_id, sample.timestamp, status, "probe", detail)
            statuses[status] += 1
        still_open = {r.record_id for r in open_records}
        for gone in set(self._collectors) - still_open:
            del self._collectors[gone]
        return ObserveOutcomesResult(len(open_records), statuses)

    def note_risk(self, instance_id: str, at: float, readiness_score: float, decision: str,
                  threshold: float, window: dict[str, object], endpoint: PgEndpoint) -> bool:
        """Remember the window behind a reported score, and record what a held decision near
        or above the threshold means: a near miss (within the margin under it) or a refused
        cutover (at or above it, but the policy held: hysteresis, cooldown, fleet budget,
        maintenance or advisory mode). At most one of each per instance per horizon.
        Returns whether a record was made."""
        self._store.remember_window(instance_id, at, window)
        if decision != "hold" or not readiness_score >= threshold - self._margin:
            return False
        kind = "refused" if readiness_score >= threshold else "near_miss"
        if self._store.has_recent(instance_id, kind, at - self._horizon_s):
            return False
        reason = (f"score {readiness_score:.0f} within {self._margin:g} of threshold "
                  f"{threshold:g}, held" if kind == "near_miss" else
                  f"score {readiness_score:.0f} >= threshold {threshold:g}, the policy held")
        return self._store.add(OutcomeRecord(
            record_id=f"{instance_id}:{kind}:{int(at)}", instance_id=instance_id, kind=kind,
            at=at, horizon_s=self._horizon_s, readiness_score=readiness_score, reason=reason,
            host=endpoint.host, port=endpoint.port, window=window))


class OutcomeActivities:
    """Activities over one outcome store."""

    def __init__(self, store: OutcomeStore, recorder: OutcomeRecorder | None = None) -> None:
        self._store = store
        self._recorder = recorder or OutcomeRecorder(store)

    @activity.defn
    def record_outcome(self, request: RecordOutcomeInput) -> bool:
        """Store a cutover, refusal or near miss; returns False if it was already stored."""
        if request.kind not in KINDS:
            raise ApplicationError(f"kind {request.kind!r}: use one of {', '.join(KINDS)}",
                                   type="InvalidRequest", non_retryable=True)
        if not (request.horizon_s > 0 and math.isfinite(request.at)):
            raise ApplicationError("horizon_s must be > 0 and at a finite epoch time",
                                   type="InvalidRequest", non_retryable=True)
        if request.kind == "cutover":
            # The cutover stops the former primary on purpose: until the recovery path says
            # where it can be watched again, a closed port says nothing about its health.
            self._store.probe_instance_at(request.instance_id, request.at, None, None)
        return self._store.add(OutcomeRecord(
            record_id=request.record_id, instance_id=request.instance_id, kind=request.kind,
            at=request.at, horizon_s=request.horizon_s, readiness_score=request.readiness_score,
            failure_probability=request.failure_probability, reason=request.reason,
            host=request.host if request.port else None, port=request.port,
            policy_decided=request.policy_decided))

    @activity.defn
    def report_outcome_evidence(self, evidence: OutcomeEvidence) -> int:
        """Attach evidence to every open record of the instance; returns how many."""
        if evidence.status not in STATUSES:
            raise ApplicationError(
                f"status {evidence.status!r}: use one of {', '.join(STATUSES)}",
                type="InvalidRequest", non_retryable=True)
        attached = 0
        for record in self._store.pending(evidence.at):
            if record.instance_id == evidence.instance_id and record.at <= evidence.at:
                self._store.observe(record.record_id, evidence.at, evidence.status,
                                    evidence.source, evidence.detail)
                if evidence.final:
                    self._store.stop_probing(record.record_id)
                attached += 1
        if evidence.probe_port and not evidence.final:
            self._store.probe_instance_at(evidence.instance_id, evidence.at,
                                          evidence.probe_host, evidence.probe_port)
        return attached

    @activity.defn
    def observe_outcomes(self) -> ObserveOutcomesResult:
        """Probe the endpoint of every open record once (the fleet watcher does this on its
        own every few minutes; this activity is for fleets without one, and for tests).

        Synchronous like the other store activities: SQLite and the probes block (up to the
        store's 30 s busy timeout), so they run in the worker's activity thread pool."""
        activity.heartbeat("probing")
        return self._recorder.probe_open_records()

    @activity.defn
    def resolve_outcomes(self, request: ResolveOutcomesInput) -> dict[str, int]:
        """Decide outcomes whose horizon has passed; counts by outcome.

        A policy-decided cutover whose former primary stayed healthy is a false migration.
        Counted from the records this call resolved (one transaction), so two scheduled
        workflows resolving at once count each record once."""
        now = request.now if request.now is not None else time.time()
        counts = {name: 0 for name in (*STATUSES, "unknown")}
        for record in self._store.resolve_due(now):
            counts[record.outcome or "unknown"] += 1
            if (record.kind == "cutover" and record.outcome == "healthy"
                    and record.policy_decided):
                count_false_migration(record.instance_id)
        if any(counts.values()):
            activity.logger.info("Outcomes resolved: %s", counts)
        return counts
