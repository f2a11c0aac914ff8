# The ShadowShift worker image. Build: docker build -t shadowshift-worker .
FROM golang:1.26-bookworm AS pulumi
COPY scripts/build-pulumi.sh /src/scripts/build-pulumi.sh
RUN bash /src/scripts/build-pulumi.sh

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql haproxy zstd \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 shadowshift
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY workflows workflows
COPY activities activities
COPY infra infra
COPY models models
COPY workers workers
COPY bench bench
COPY scripts scripts
RUN pip install --no-cache-dir . && mkdir -p /app/.tools/bin /var/lib/shadowshift \
 && chown shadowshift /var/lib/shadowshift
COPY --from=pulumi /src/.tools/bin/pulumi /app/.tools/bin/pulumi
ENV PATH=/app/.tools/bin:/app/scripts/bin:$PATH \
    PULUMI_PYTHON_CMD=/usr/local/bin/python \
    PULUMI_SKIP_UPDATE_CHECK=true \
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true \
    SHADOWSHIFT_STATE_DIR=/var/lib/shadowshift \
    SHADOWSHIFT_PULUMI_ROOT=/app/.tools \
    SHADOWSHIFT_PROMETHEUS_PORT=9464 \
    SHADOWSHIFT_TEMPORAL_METRICS_PORT=9465
# ShadowShift metrics, Temporal SDK metrics.
EXPOSE 9464 9465
USER shadowshift
# Healthy means "polling its task queue", read from the worker's own metrics endpoint
# (workers/health.py), not merely "the process exists".
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "workers.health"]
CMD ["python", "-m", "workers.main"]
