"""OpenTelemetry wiring: traces through Temporal's interceptor, SDK metrics through the Runtime.

Kept apart from ``main`` so tests can build the same interceptor around an in-memory exporter.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import (
    OpenTelemetryConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
)

from workers.settings import Settings

SERVICE_NAME = "shadowshift-worker"


def build_tracer_provider(
    settings: Settings, processors: Sequence[SpanProcessor] = ()
) -> TracerProvider:
    """A tracer provider exporting to ``settings.otlp_endpoint`` (if set) and ``processors``."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
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


def build_runtime(settings: Settings) -> Runtime | None:
    """A Temporal Runtime exporting SDK metrics, or ``None`` for the default runtime."""
    if settings.prometheus_port:
        metrics: PrometheusConfig | OpenTelemetryConfig = PrometheusConfig(
            bind_address=f"0.0.0.0:{settings.prometheus_port}"
        )
    elif settings.otlp_endpoint:
        metrics = OpenTelemetryConfig(url=settings.otlp_endpoint)
    else:
        return None
    return Runtime(
        telemetry=TelemetryConfig(metrics=metrics, global_tags={"service": SERVICE_NAME})
    )
