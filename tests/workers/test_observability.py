"""Metrics reach a real Prometheus endpoint over HTTP, log lines carry their span's trace id,
the health check reads the endpoint, and telemetry settings are validated."""

from __future__ import annotations

import dataclasses
import io
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from infra import observability
from infra.local.ports import free_port
from workers import health
from workers.logging_config import LOG_FORMAT, NO_TRACE, TraceContextFilter, configure_logging
from workers.settings import Settings, SettingsError, load_settings
from workers.telemetry import Telemetry, start_telemetry


def scrape(port: int) -> list[Sample]:
    """Every sample the endpoint on ``port`` serves, parsed by prometheus_client."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def sample_value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the one sample named ``name`` whose labels include ``labels``."""
    found = [s.value for s in samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None


@dataclasses.dataclass
class Observed:
    """Telemetry under test and the spans it finished."""

    telemetry: Telemetry
    spans: InMemorySpanExporter

    @property
    def port(self) -> int:
        assert self.telemetry.prometheus is not None
        return self.telemetry.prometheus.port


@pytest.fixture
def observed(settings: Settings) -> Iterator[Observed]:
    """Telemetry of our own on a free port, with spans kept in memory."""
    exporter = InMemorySpanExporter()
    configured = dataclasses.replace(settings, prometheus_port=free_port())
    started = start_telemetry(configured, span_processors=[SimpleSpanProcessor(exporter)],
                              prometheus_host="127.0.0.1")
    try:
        yield Observed(started, exporter)
    finally:
        started.shutdown()


def test_instruments_reach_the_prometheus_endpoint(observed: Observed) -> None:
    """Values recorded through the module's API are served over HTTP under the names that
    METRICS promises (the names the Grafana dashboard is checked against)."""
    observability.observe_scores("db-a", 71.5, 0.25)
    observability.observe_scores("db-a", float("nan"), float("nan"))  # no data: keep the last
    observability.observe_replication("db-a", 4096, 0.5)
    observability.observe_sync_degraded("db-a", True)
    observability.observe_cutover("db-a", "planned", "completed", blackout_ms=80.0,
                                  duration_s=3.5)
    observability.count_false_migration("db-a")
    observability.count_failover_request("db-a", "requested")
    observability.set_model_version("ab" * 32)
    with observability.cutover_step_span("promote", "db-a"):
        pass
    samples = scrape(observed.port)
    assert sample_value(samples, "shadowshift_readiness_score", instance="db-a") == 71.5
    assert sample_value(samples, "shadowshift_failure_probability", instance="db-a") == 0.25
    assert sample_value(samples, "shadowshift_replication_lag_bytes", instance="db-a") == 4096
    assert sample_value(samples, "shadowshift_replication_delay_seconds", instance="db-a") == 0.5
    assert sample_value(samples, "shadowshift_sync_degraded", instance="db-a") == 1
    labels = {"instance": "db-a", "mode": "planned", "outcome": "completed"}
    assert sample_value(samples, "shadowshift_cutovers_total", **labels) == 1
    assert sample_value(samples, "shadowshift_cutover_blackout_seconds_sum", **labels) == 0.08
    assert sample_value(samples, "shadowshift_cutover_duration_seconds_sum", **labels) == 3.5
    assert sample_value(samples, "shadowshift_false_migrations_total", instance="db-a") == 1
    assert sample_value(samples, "shadowshift_failover_requests_total", instance="db-a",
                        outcome="requested") == 1
    assert sample_value(samples, "shadowshift_model_info", model_version="ab" * 6) == 1
    assert sample_value(samples, "shadowshift_cutover_step_duration_seconds_count",
                        step="promote", result="ok") == 1
    served = {s.name for s in samples}
    for spec in observability.METRICS:
        if spec is observability.WORKER_RUNNING:
            continue  # only a worker sets it; see the worker test
        assert spec.prometheus in served or f"{spec.prometheus}_count" in served, spec.name
    assert "process_cpu_seconds_total" in served


def test_failed_step_marks_span_and_duration(observed: Observed) -> None:
    """A step that raises leaves an error span with the exception and an ``error`` duration."""
    with pytest.raises(RuntimeError), observability.cutover_step_span("catch_up", "db-b"):
        raise RuntimeError("shadow is 10 MB behind")
    spans = observed.spans.get_finished_spans()
    (span,) = [s for s in spans if s.name == "cutover.catch_up"]
    assert not span.status.is_ok and span.events[0].name == "exception"
    assert span.attributes["shadowshift.instance"] == "db-b"
    samples = scrape(observed.port)
    assert sample_value(samples, "shadowshift_cutover_step_duration_seconds_count",
                        instance="db-b", step="catch_up", result="error") == 1


def test_log_line_carries_the_trace_id_of_its_span() -> None:
    """A record logged inside a span prints that span's trace and span id; outside, a dash."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("shadowshift.test.trace")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    tracer = TracerProvider().get_tracer("test")
    try:
        with tracer.start_as_current_span("work") as span:
            logger.info("inside")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = stream.getvalue().splitlines()
    context = span.get_span_context()
    assert f"trace_id={context.trace_id:032x} span_id={context.span_id:016x}" in inside
    assert f"trace_id={NO_TRACE} span_id={NO_TRACE}" in outside and "outside" in outside


def test_configure_logging_installs_one_handler() -> None:
    """Configuring twice does not print lines twice."""
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        configure_logging("INFO", io.StringIO())
        configure_logging("DEBUG", io.StringIO())
        ours = [h for h in root.handlers if h.get_name() == "shadowshift"]
        assert len(ours) == 1 and root.level == logging.DEBUG
    finally:
        for handler in [h for h in root.handlers if h not in before[0]]:
            root.removeHandler(handler)
        root.setLevel(before[1])


def test_health_check_reads_the_worker_gauge(observed: Observed) -> None:
    """Healthy only while the worker says it polls; draining and no endpoint are unhealthy."""
    port = observed.port
    observability.set_worker_running(True)
    try:
        assert health.check(port) is None
        observability.set_worker_running(False)
        assert health.check(port) == "the worker is draining"
    finally:
        observability.set_worker_running(False)
    unused = free_port()
    assert "no metrics endpoint" in (health.check(unused) or "")


def test_metrics_ports_must_differ(tmp_path: Path) -> None:
    """One port for both endpoints is refused with both variable names."""
    passphrase = tmp_path / "pass"
    passphrase.write_text("p\n")
    env = {"SHADOWSHIFT_STATE_DIR": str(tmp_path),
           "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE": str(passphrase),
           "SHADOWSHIFT_PROMETHEUS_PORT": "9464", "SHADOWSHIFT_TEMPORAL_METRICS_PORT": "9464"}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert "SHADOWSHIFT_TEMPORAL_METRICS_PORT" in str(caught.value)
    assert "SHADOWSHIFT_PROMETHEUS_PORT" in str(caught.value)
    with pytest.raises(SettingsError, match="SHADOWSHIFT_TEMPORAL_METRICS_PORT"):
        load_settings({**env, "SHADOWSHIFT_TEMPORAL_METRICS_PORT": "99999"})


class _OtlpReceiver:
    """A real OTLP/gRPC endpoint (the collector's protocol) that keeps what it receives."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2,
            metrics_service_pb2_grpc,
        )
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        self.metric_names: list[str] = []
        self.span_names: list[str] = []
        receiver = self

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                for resource in request.resource_metrics:
                    for scope in resource.scope_metrics:
                        receiver.metric_names += [m.name for m in scope.metrics]
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        receiver.span_names += [s.name for s in scope.spans]
                return trace_service_pb2.ExportTraceServiceResponse()

        import concurrent.futures

        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def test_otlp_export_of_metrics_and_spans(settings: Settings) -> None:
    """With SHADOWSHIFT_OTLP_ENDPOINT set, spans and metrics arrive at a real OTLP/gRPC
    receiver; with a Prometheus port as well, metrics are pulled only (not counted twice)."""
    receiver = _OtlpReceiver()
    try:
        otlp = dataclasses.replace(settings, otlp_endpoint=f"http://127.0.0.1:{receiver.port}")
        pushed = start_telemetry(otlp)
        with observability.cutover_step_span("fence_primary", "db-c"):
            observability.observe_scores("db-c", 12.0, 0.01)
        pushed.meter_provider.force_flush()
        pushed.tracer_provider.force_flush()
        pushed.shutdown()
        assert observability.READINESS.name in receiver.metric_names
        assert observability.STEP_DURATION.name in receiver.metric_names
        assert "cutover.fence_primary" in receiver.span_names
        receiver.metric_names.clear()
        pulled = start_telemetry(dataclasses.replace(otlp, prometheus_port=free_port()),
                                 prometheus_host="127.0.0.1")
        observability.observe_scores("db-c", 13.0, 0.02)
        pulled.meter_provider.force_flush()
        pulled.shutdown()
        assert receiver.metric_names == []
    finally:
        receiver.server.stop(grace=None)


def test_false_migrations_are_counted_when_outcomes_resolve(
    observed: Observed, tmp_path: Path
) -> None:
    """A policy-decided cutover whose former primary stayed healthy through the horizon counts
    as a false migration, once; one that degraded does not, nor does a refused cutover, nor
    an operator's cutover."""
    from temporalio.testing import ActivityEnvironment

    from activities.outcomes import StoreOutcomeActivities
    from activities.outcomes_store import OutcomeStore
    from contracts.outcomes import RecordOutcomeInput, ResolveOutcomesInput
    from infra.factory import Platforms
    from infra.platform import PlatformContext
    from tests.conftest import local_request

    t0, hour = 1_800_000_000.0, 3600.0
    store = OutcomeStore(tmp_path / "outcomes.sqlite")
    activities = StoreOutcomeActivities(store, Platforms(PlatformContext(None, tmp_path)))
    env = ActivityEnvironment()
    for record_id, instance, kind, status, by_policy in (
        ("wf:1", "db-fine", "cutover", "healthy", True),
        ("wf:2", "db-sick", "cutover", "degraded", True),
        ("wf:3", "db-fine", "refused", "healthy", True),
        ("wf:4", "db-op", "cutover", "healthy", False),
    ):
        env.run(activities.record_outcome,
                RecordOutcomeInput(record_id, local_request(instance, 15432, 15433, 15434),
                                   kind, t0, "why", horizon_s=hour, policy_decided=by_policy))
        store.observe(record_id, t0 + 60, status, "probe")
    env.run(activities.resolve_outcomes, ResolveOutcomesInput(t0 + hour))
    env.run(activities.resolve_outcomes, ResolveOutcomesInput(t0 + 2 * hour))  # nothing new
    samples = scrape(observed.port)
    assert sample_value(samples, "shadowshift_false_migrations_total", instance="db-fine") == 1
    assert sample_value(samples, "shadowshift_false_migrations_total", instance="db-sick") is None
    assert sample_value(samples, "shadowshift_false_migrations_total", instance="db-op") is None
