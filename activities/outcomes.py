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

from activities.outcomes_store import OutcomeRecord, OutcomeStore
from contracts.errors import INVALID_REQUEST
from contracts.outcomes import (
    DEFAULT_HORIZON_S,
    KINDS,
    STATUSES,
    ObserveOutcomesResult,
    OutcomeActivities,
    OutcomeEvidence,
    RecordOutcomeInput,
    ResolveOutcomesInput,
)
from contracts.shadow import PlatformRequest
from infra.errors import InfraError
from infra.factory import Platforms
from infra.local.metrics import LocalMetricsCollector
from infra.local.postgres import PgEndpoint
from infra.observability import count_false_migration
from models.metrics import MetricSample

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
                  threshold: float, window: dict[str, object],
                  address: tuple[str, int] | None) -> bool:
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
            host=address[0] if address else None, port=address[1] if address else None,
            window=window))


class StoreOutcomeActivities(OutcomeActivities):
    """Activities over one outcome store; the platforms say where a node can be probed."""

    def __init__(self, store: OutcomeStore, platforms: Platforms,
                 recorder: OutcomeRecorder | None = None) -> None:
        self._store = store
        self._platforms = platforms
        self._recorder = recorder or OutcomeRecorder(store)

    def _address(self, instance: PlatformRequest, node: str) -> tuple[str, int] | None:
        """Where ``node`` can be probed from this worker (``None``: nowhere, or unknown)."""
        if not node:
            return None
        try:
            platform = self._platforms.platform_for(instance)
            try:
                return platform.probe_address(node)
            finally:
                platform.close()
        except InfraError as err:
            activity.logger.warning("Cannot probe %s of %s: %s", node, instance.instance_id, err)
            return None

    @activity.defn
    def record_outcome(self, request: RecordOutcomeInput) -> bool:
        """Store a cutover, refusal or near miss; returns False if it was already stored."""
        if request.kind not in KINDS:
            raise ApplicationError(f"kind {request.kind!r}: use one of {', '.join(KINDS)}",
                                   type=INVALID_REQUEST, non_retryable=True)
        if not (request.horizon_s > 0 and math.isfinite(request.at)):
            raise ApplicationError("horizon_s must be > 0 and at a finite epoch time",
                                   type=INVALID_REQUEST, non_retryable=True)
        instance_id = request.instance.instance_id
        if request.kind == "cutover":
            # The cutover stops the former primary on purpose: until the recovery path says
            # where it can be watched again, a closed port says nothing about its health.
            self._store.probe_instance_at(instance_id, request.at, None, None)
        address = self._address(request.instance, request.probe_node)
        return self._store.add(OutcomeRecord(
            record_id=request.record_id, instance_id=instance_id, kind=request.kind,
            at=request.at, horizon_s=request.horizon_s, readiness_score=request.readiness_score,
            failure_probability=request.failure_probability, reason=request.reason,
            host=address[0] if address else None, port=address[1] if address else None,
            policy_decided=request.policy_decided))

    @activity.defn
    def report_outcome_evidence(self, evidence: OutcomeEvidence) -> int:
        """Attach evidence to every open record of the instance; returns how many."""
        if evidence.status not in STATUSES:
            raise ApplicationError(
                f"status {evidence.status!r}: use one of {', '.join(STATUSES)}",
                type=INVALID_REQUEST, non_retryable=True)
        instance_id = evidence.instance.instance_id
        attached = 0
        for record in self._store.pending(evidence.at):
            if record.instance_id == instance_id and record.at <= evidence.at:
                self._store.observe(record.record_id, evidence.at, evidence.status,
                                    evidence.source, evidence.detail)
                if evidence.final:
                    self._store.stop_probing(record.record_id)
                attached += 1
        address = self._address(evidence.instance, evidence.probe_node)
        if address is not None and not evidence.final:
            self._store.probe_instance_at(instance_id, evidence.at, *address)
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
