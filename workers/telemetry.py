"""OpenTelemetry wiring: traces, ShadowShift's metrics, and the Temporal SDK's own metrics.

- Traces: Temporal's tracing interceptor (client and worker) plus our spans (Pulumi operations,
  cutover steps), exported over OTLP when ``SHADOWSHIFT_OTLP_ENDPOINT`` is set.
- ShadowShift metrics (:mod:`infra.observability`): an OpenTelemetry meter provider with a
  Prometheus endpoint (``SHADOWSHIFT_PROMETHEUS_PORT``), or else OTLP export.
- Temporal SDK metrics: the SDK's Rust core exports them itself, through the ``Runtime``; it
  serves its own Prometheus endpoint (``SHADOWSHIFT_TEMPORAL_METRICS_PORT``) or sends OTLP.
  Two endpoints, because the core's exporter cannot share a registry with Python's.

Kept apart from ``main`` so tests can build the same pieces around in-memory exporters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import (
    OpenTelemetryConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
)

from infra import observability
from workers.settings import Settings

SERVICE_NAME = "shadowshift-worker"


def _resource() -> Resource:
    return Resource.create({"service.name": SERVICE_NAME})


def build_tracer_provider(
    settings: Settings, processors: Sequence[SpanProcessor] = ()
) -> TracerProvider:
    """A tracer provider exporting to ``settings.otlp_endpoint`` (if set) and ``processors``."""
    provider = TracerProvider(resource=_resource())
    if settings.otlp_endpoint:
        # Imported lazily: the gRPC exporter is only needed when someone collects traces.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        insecure = settings.otlp_endpoint.startswith("http://")
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=insecure)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def tracing_interceptor(provider: TracerProvider) -> TracingInterceptor:
    """Temporal's tracing interceptor bound to ``provider`` (not the global one)."""
    return TracingInterceptor(tracer=provider.get_tracer("shadowshift"))


@dataclass
class PrometheusEndpoint:
    """ShadowShift's ``/metrics`` over HTTP: a reader, its own registry and the server."""

    reader: PrometheusMetricReader
    """Hand this to the meter provider."""
    server: WSGIServer
    """The HTTP server (a daemon thread serves it)."""
    thread: Thread
    """The serving thread."""

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_prometheus(port: int, host: str = "127.0.0.1") -> PrometheusEndpoint:
    """Serve a fresh registry with the process's CPU/memory and a reader for our meters.

    A registry of our own (not ``prometheus_client.REGISTRY``) so several endpoints can live
    in one process, as they do in tests.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    reader = PrometheusMetricReader(registry=registry)
    server, thread = start_http_server(port, host, registry=registry)
    return PrometheusEndpoint(reader, server, thread)


def build_meter_provider(
    settings: Settings, readers: Sequence[MetricReader] = ()
) -> MeterProvider:
    """A meter provider with ``readers``, plus OTLP export when an endpoint is set and no
    Prometheus port is (Prometheus pulls them then; pushing too would count them twice)."""
    all_readers = list(readers)
    if settings.otlp_endpoint and not settings.prometheus_port:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        insecure = settings.otlp_endpoint.startswith("http://")
        exporter = OTLPMetricExporter(endpoint=settings.otlp_endpoint, insecure=insecure)
        all_readers.append(PeriodicExportingMetricReader(exporter))
    return MeterProvider(resource=_resource(), metric_readers=all_readers)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_runtime(settings: Settings) -> Runtime | None:
    """A Temporal Runtime exporting SDK metrics, or ``None`` for the default runtime."""
    if settings.temporal_metrics_port:
        # Prometheus conventions (seconds, unit and _total suffixes), like our own metrics.
        metrics: PrometheusConfig | OpenTelemetryConfig = PrometheusConfig(
            bind_address=_host_port(settings.metrics_host, settings.temporal_metrics_port),
            counters_total_suffix=True,
            unit_suffix=True,
            durations_as_seconds=True,
        )
    elif settings.otlp_endpoint:
        metrics = OpenTelemetryConfig(url=settings.otlp_endpoint, durations_as_seconds=True)
    else:
        return None
    return Runtime(
        telemetry=TelemetryConfig(metrics=metrics, global_tags={"service": SERVICE_NAME})
    )


@dataclass
class Telemetry:
    """Everything a worker exports through; :meth:`shutdown` flushes and stops it."""

    tracer_provider: TracerProvider
    """Traces (the interceptor's and ours)."""
    meter_provider: MeterProvider
    """ShadowShift's metrics."""
    runtime: Runtime | None
    """Temporal SDK metrics; ``None``: the SDK's default runtime (no export)."""
    prometheus: PrometheusEndpoint | None = None
    """Our ``/metrics`` endpoint, when a port is set."""

    def interceptor(self) -> TracingInterceptor:
        """Temporal's tracing interceptor for a client (its workers inherit it)."""
        return tracing_interceptor(self.tracer_provider)

    def shutdown(self) -> None:
        """Flush exporters and close the endpoint."""
        observability.install()  # back to the global API, so no one writes to a closed provider
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()
        if self.prometheus:
            self.prometheus.close()


def start_telemetry(
    settings: Settings,
    *,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    prometheus_host: str | None = None,
) -> Telemetry:
    """Build providers and endpoints from ``settings`` and bind our instruments to them.

    Does not touch OpenTelemetry's global providers; ``workers.main`` sets the global tracer
    provider itself (library spans such as Pulumi's use it). The endpoint listens on
    ``prometheus_host``, by default ``settings.metrics_host`` (loopback unless configured).
    """
    prometheus = (
        serve_prometheus(settings.prometheus_port, prometheus_host or settings.metrics_host)
        if settings.prometheus_port else None
    )
    readers = [*metric_readers, *([prometheus.reader] if prometheus else [])]
    tracer_provider = build_tracer_provider(settings, span_processors)
    meter_provider = build_meter_provider(settings, readers)
    observability.install(meter_provider, tracer_provider)
    return Telemetry(tracer_provider, meter_provider, build_runtime(settings), prometheus)
