"""ShadowShift's own metrics and cutover-step spans: every instrument, and the calls that feed them.

Activities call the small functions here (:func:`observe_scores`, :func:`observe_replication`,
:func:`observe_cutover`, :func:`count_false_migration`, :func:`set_model_version`,
:func:`cutover_step_span`) instead of holding instruments themselves, so one module owns the
metric names the dashboards and alerts depend on (:data:`METRICS`).

The instruments are bound to the providers handed to :func:`install` (the worker's, built by
:mod:`workers.telemetry`). Until then they are bound to OpenTelemetry's global API, which is a
no-op until someone sets a global provider; so code and tests that never configure telemetry
pay nothing and need no guard.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import Span, TracerProvider

SCOPE = "shadowshift"
"""Instrumentation scope of every metric and span made here."""

log = logging.getLogger("shadowshift.cutover")


@dataclass(frozen=True)
class MetricSpec:
    """One instrument: its OpenTelemetry name and the name Prometheus shows."""

    name: str
    """OpenTelemetry instrument name."""
    kind: str
    """``gauge``, ``counter``, ``histogram`` or ``observable_gauge``."""
    unit: str
    """UCUM unit (Prometheus appends it to the name: ``By`` → ``_bytes``, ``s`` → ``_seconds``)."""
    description: str
    """Help text."""
    prometheus: str
    """Name in the Prometheus exposition (histograms add ``_bucket``/``_sum``/``_count``)."""


READINESS = MetricSpec("shadowshift.readiness_score", "gauge", "1",
                       "Migration Readiness Score, 0..100, per instance",
                       "shadowshift_readiness_score")
PROBABILITY = MetricSpec("shadowshift.failure_probability", "gauge", "1",
                         "Model's failure probability within its horizon, per instance",
                         "shadowshift_failure_probability")
LAG_BYTES = MetricSpec("shadowshift.replication_lag", "gauge", "By",
                       "WAL bytes the shadow has not replayed yet",
                       "shadowshift_replication_lag_bytes")
LAG_SECONDS = MetricSpec("shadowshift.replication_delay", "gauge", "s",
                         "Replay lag in seconds as the primary measures it",
                         "shadowshift_replication_delay_seconds")
SYNC_DEGRADED = MetricSpec("shadowshift.sync_degraded", "gauge", "1",
                           "Tier 1: 1 while commits do not wait for the lost shadow (RPO > 0)",
                           "shadowshift_sync_degraded")
CUTOVERS = MetricSpec("shadowshift.cutovers", "counter", "",
                      "Finished cutovers by mode and outcome", "shadowshift_cutovers_total")
CUTOVER_DURATION = MetricSpec("shadowshift.cutover.duration", "histogram", "s",
                              "Cutover from preflight to finalise",
                              "shadowshift_cutover_duration_seconds")
BLACKOUT = MetricSpec("shadowshift.cutover.blackout", "histogram", "s",
                      "Critical path (fence to traffic shifted): no writable primary for clients",
                      "shadowshift_cutover_blackout_seconds")
STEP_DURATION = MetricSpec("shadowshift.cutover.step.duration", "histogram", "s",
                           "One cutover step, by step and result",
                           "shadowshift_cutover_step_duration_seconds")
FALSE_MIGRATIONS = MetricSpec("shadowshift.false_migrations", "counter", "",
                              "Cutovers whose former primary did not fail within the horizon",
                              "shadowshift_false_migrations_total")
FAILOVER_REQUESTS = MetricSpec("shadowshift.failover_requests", "counter", "",
                               "Automatic failovers of a silent primary, by outcome "
                               "(requested, refused, advisory)",
                               "shadowshift_failover_requests_total")
MODEL_INFO = MetricSpec("shadowshift.model.info", "observable_gauge", "",
                        "1 for the failure model in use; its version is the model_version label",
                        "shadowshift_model_info")
WORKER_RUNNING = MetricSpec("shadowshift.worker.running", "observable_gauge", "",
                            "1 while the worker polls its task queue, 0 while it drains",
                            "shadowshift_worker_running")

METRICS: tuple[MetricSpec, ...] = (
    READINESS, PROBABILITY, LAG_BYTES, LAG_SECONDS, SYNC_DEGRADED, CUTOVERS, CUTOVER_DURATION,
    BLACKOUT, STEP_DURATION, FALSE_MIGRATIONS, FAILOVER_REQUESTS, MODEL_INFO, WORKER_RUNNING,
)
"""Every metric ShadowShift itself exports."""

TEMPORAL_SDK_METRICS = (
    "temporal_workflow_completed_total",
    "temporal_workflow_endtoend_latency_seconds",
    "temporal_activity_execution_latency_seconds",
    "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_workflow_task_schedule_to_start_latency_seconds",
    "temporal_worker_task_slots_available",
    "temporal_request_total",
)
"""Temporal SDK metrics the dashboard charts, as the SDK's Prometheus endpoint names them
(with the Prometheus conventions :func:`workers.telemetry.build_runtime` turns on)."""

# Blackouts are tens of milliseconds to seconds; whole cutovers seconds to minutes.
_BLACKOUT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class _State:
    """What the observable gauges report; written from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.model_version: str | None = None
        self.worker_running: bool | None = None


_state = _State()


def _observe_model(_options: CallbackOptions) -> Iterable[Observation]:
    with _state.lock:
        if _state.model_version is None:
            return []
        return [Observation(1, {"model_version": _state.model_version})]


def _observe_worker(_options: CallbackOptions) -> Iterable[Observation]:
    with _state.lock:
        running = _state.worker_running
    return [] if running is None else [Observation(1 if running else 0)]


class _Instruments:
    """The instruments of one meter (rebuilt when another provider is installed)."""

    def __init__(self, meter: Meter) -> None:
        self.readiness = meter.create_gauge(READINESS.name, READINESS.unit, READINESS.description)
        self.probability = meter.create_gauge(
            PROBABILITY.name, PROBABILITY.unit, PROBABILITY.description)
        self.lag_bytes = meter.create_gauge(LAG_BYTES.name, LAG_BYTES.unit, LAG_BYTES.description)
        self.lag_seconds = meter.create_gauge(
            LAG_SECONDS.name, LAG_SECONDS.unit, LAG_SECONDS.description)
        self.sync_degraded = meter.create_gauge(
            SYNC_DEGRADED.name, SYNC_DEGRADED.unit, SYNC_DEGRADED.description)
        self.cutovers = meter.create_counter(CUTOVERS.name, CUTOVERS.unit, CUTOVERS.description)
        self.duration = meter.create_histogram(
            CUTOVER_DURATION.name, CUTOVER_DURATION.unit, CUTOVER_DURATION.description,
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
        self.blackout = meter.create_histogram(
            BLACKOUT.name, BLACKOUT.unit, BLACKOUT.description,
            explicit_bucket_boundaries_advisory=_BLACKOUT_BUCKETS)
        self.step_duration = meter.create_histogram(
            STEP_DURATION.name, STEP_DURATION.unit, STEP_DURATION.description,
            explicit_bucket_boundaries_advisory=_BLACKOUT_BUCKETS)
        self.false_migrations = meter.create_counter(
            FALSE_MIGRATIONS.name, FALSE_MIGRATIONS.unit, FALSE_MIGRATIONS.description)
        self.failover_requests = meter.create_counter(
            FAILOVER_REQUESTS.name, FAILOVER_REQUESTS.unit, FAILOVER_REQUESTS.description)
        meter.create_observable_gauge(MODEL_INFO.name, [_observe_model], MODEL_INFO.unit,
                                      MODEL_INFO.description)
        meter.create_observable_gauge(WORKER_RUNNING.name, [_observe_worker],
                                      WORKER_RUNNING.unit, WORKER_RUNNING.description)


_instruments = _Instruments(metrics.get_meter(SCOPE))
_tracer = trace.get_tracer(SCOPE)


def install(
    meter_provider: MeterProvider | None = None, tracer_provider: TracerProvider | None = None
) -> None:
    """Bind the instruments and step spans to these providers (``None``: the global ones)."""
    global _instruments, _tracer
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
    _instruments = _Instruments(meter)
    _tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE)


def observe_scores(
    instance_id: str, readiness_score: float, failure_probability: float
) -> None:
    """The latest readiness score and failure probability of an instance (NaN: not scored)."""
    attributes = {"instance": instance_id}
    if readiness_score == readiness_score:  # NaN means "no data": keep the last real value
        _instruments.readiness.set(readiness_score, attributes)
    if failure_probability == failure_probability:
        _instruments.probability.set(failure_probability, attributes)


def observe_replication(
    instance_id: str, lag_bytes: float | None, lag_seconds: float | None = None
) -> None:
    """The shadow's replication lag as just read (``None``: unknown, nothing recorded)."""
    attributes = {"instance": instance_id}
    if lag_bytes is not None:
        _instruments.lag_bytes.set(lag_bytes, attributes)
    if lag_seconds is not None:
        _instruments.lag_seconds.set(lag_seconds, attributes)


def observe_sync_degraded(instance_id: str, degraded: bool) -> None:
    """Tier 1's mode as the supervisor just saw or set it."""
    _instruments.sync_degraded.set(1 if degraded else 0, {"instance": instance_id})


def observe_cutover(
    instance_id: str,
    mode: str,
    outcome: str,
    *,
    blackout_ms: float,
    duration_s: float | None,
) -> None:
    """A finished cutover: count it by outcome, record its blackout and duration.

    Call it once per cutover (the caller's finalise step is idempotent, this is not).

    Args:
        instance_id: the instance.
        mode: ``planned`` or ``emergency``.
        outcome: ``completed``, ``compensated``, ``promoted_unverified`` or ``failed``.
        blackout_ms: the critical path, fence to traffic shifted.
        duration_s: preflight to finalise; ``None`` when unknown.
    """
    attributes = {"instance": instance_id, "mode": mode, "outcome": outcome}
    _instruments.cutovers.add(1, attributes)
    _instruments.blackout.record(blackout_ms / 1000.0, attributes)
    if duration_s is not None:
        _instruments.duration.record(duration_s, attributes)


def count_false_migration(instance_id: str) -> None:
    """A cutover turned out unnecessary: its former primary did not fail within the horizon."""
    _instruments.false_migrations.add(1, {"instance": instance_id})


def count_failover_request(instance_id: str, outcome: str) -> None:
    """The fleet watcher handled a silent primary: ``requested`` an emergency cutover, was
    ``refused`` by the protection, or only logged it (``advisory``)."""
    _instruments.failover_requests.add(1, {"instance": instance_id, "outcome": outcome})


def set_model_version(model_sha256: str) -> None:
    """The failure model now scoring (its sha256; the gauge shows the first 12 characters)."""
    with _state.lock:
        _state.model_version = model_sha256[:12]


def set_worker_running(running: bool) -> None:
    """Whether the worker polls (``True``) or drains (``False``); the health check reads it."""
    with _state.lock:
        _state.worker_running = running


@contextmanager
def cutover_step_span(
    step: str, instance_id: str, attributes: Mapping[str, str] | None = None
) -> Iterator[Span]:
    """A span ``cutover.<step>`` (a child of the current activity's span) that also records
    the step's duration and logs one line inside the span, so the line carries its trace id.
    An exception marks the span and the duration as failed and propagates."""
    started = time.monotonic()
    span_attributes = {"shadowshift.instance": instance_id, "shadowshift.cutover.step": step,
                       **(attributes or {})}
    with _tracer.start_as_current_span(f"cutover.{step}", attributes=span_attributes) as span:
        result = "error"
        try:
            yield span
            result = "ok"
        finally:
            seconds = time.monotonic() - started
            _instruments.step_duration.record(
                seconds, {"instance": instance_id, "step": step, "result": result}
            )
            if result == "ok":
                log.info("Cutover step %s of %s done in %.1f ms.", step, instance_id,
                         seconds * 1000)
            else:
                log.warning("Cutover step %s of %s failed after %.1f ms.", step, instance_id,
                            seconds * 1000)
