"""``python -m workers.health``: exit 0 when this container's worker is polling, 1 otherwise.

The Dockerfile's HEALTHCHECK runs it. "The process exists" says little; this asks the worker's
own Prometheus endpoint and requires ``shadowshift_worker_running`` to be 1, which the worker
sets once it polls its task queue and clears when it starts draining. A worker that cannot
reach Temporal never sets it, so the container turns unhealthy instead of looking fine.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from workers.observability import WORKER_RUNNING
from workers.settings import SettingsError, load_settings


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


def main() -> int:
    """Entry point; returns the exit code."""
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1
    if not settings.prometheus_port:
        print("unhealthy: set SHADOWSHIFT_PROMETHEUS_PORT, the check reads that endpoint",
              file=sys.stderr)
        return 1
    problem = check(settings.prometheus_port)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy: the worker is polling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
