"""``python -m workers.health``: exit 0 when this container's worker can do its job, 1 otherwise.

The Dockerfile's HEALTHCHECK runs it. "The process exists" says little; this checks two things:

1. The worker's own Prometheus endpoint shows ``shadowshift_worker_running`` = 1: the worker
   started polling its task queue and is not draining. The worker sets it once, so on its own
   it would stay green after Temporal went away; hence
2. the Temporal frontend the worker polls (``SHADOWSHIFT_TEMPORAL_ADDRESS``, same namespace)
   answers from this container now (a connect with its system-info call, bounded to 3 s).

It does not prove the worker's own poll connection is live (the SDK re-dials it by itself), nor
that activities succeed; the cutover and protection metrics say that.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.service import TLSConfig

from infra.observability import WORKER_RUNNING
from workers.settings import SettingsError, load_settings
from workers.temporal_tls import tls_config


def check(port: int, host: str = "127.0.0.1", timeout_s: float = 3.0) -> str | None:
    """``None`` when healthy, else one sentence saying why not."""
    url = f"http://{host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as err:
        return f"no metrics endpoint at {url} ({err})"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == WORKER_RUNNING.prometheus:
                return None if sample.value == 1 else "the worker is draining"
    return "the worker is not polling yet"


def temporal_problem(address: str, namespace: str, timeout_s: float = 3.0,
                     tls: TLSConfig | bool = False) -> str | None:
    """``None`` when the Temporal frontend at ``address`` answers within ``timeout_s`` (over
    ``tls``, as the worker connects), else one sentence saying why not."""

    async def ask() -> None:
        await asyncio.wait_for(Client.connect(address, namespace=namespace, tls=tls),
                               timeout=timeout_s)

    try:
        asyncio.run(ask())
    except (TimeoutError, RuntimeError, OSError) as err:
        return f"Temporal at {address} does not answer ({str(err) or type(err).__name__})"
    return None


def main() -> int:
    """Entry point; returns the exit code."""
    try:
        settings = load_settings()
        tls = tls_config(settings)
    except SettingsError as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1
    if not settings.prometheus_port:
        print("unhealthy: set SHADOWSHIFT_PROMETHEUS_PORT, the check reads that endpoint",
              file=sys.stderr)
        return 1
    wildcard = settings.metrics_host in ("0.0.0.0", "::")
    host = "127.0.0.1" if wildcard else settings.metrics_host
    problem = check(settings.prometheus_port, host) or temporal_problem(
        settings.temporal_address, settings.namespace, tls=tls
    )
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy: the worker is polling and Temporal answers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
