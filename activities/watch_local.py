"""Local protections in the fleet watcher: which PostgreSQL node serves, and its collector.

The watcher samples the node the router currently sends traffic to (HAProxy weights), with
its data directory's disk and any metric overlay installed for that node
(``infra/local/metric_overlay.py``). Every sample is a fresh reading, taken once per sample
interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.errors import InfraError
from infra.local.haproxy import HAProxyManager
from infra.local.metric_overlay import overlay_path
from infra.local.metrics import LocalMetricsCollector
from infra.local.postgres import PgEndpoint
from infra.local.spec import LocalShadowSpec


def local_spec(spec: dict[str, Any], state_dir: Path) -> LocalShadowSpec:
    """The local spec of a protection from the spec in its memo.

    Raises:
        KeyError, TypeError, ValueError, InfraError: an unusable spec.
    """
    return LocalShadowSpec(
        instance_id=spec["instance_id"], primary_port=int(spec["primary_port"]),
        shadow_port=int(spec["shadow_port"]), router_port=int(spec["router_port"]),
        state_dir=state_dir,
    )


def local_collector(haproxy: HAProxyManager, state_dir: Path, spec: LocalShadowSpec,
                    port: int) -> LocalMetricsCollector:
    """The collector of the node listening on ``port`` (primary or shadow)."""
    return LocalMetricsCollector(
        spec.instance_id, PgEndpoint(port=port), haproxy=haproxy,
        server_name=spec.primary_node if port == spec.primary_port else spec.shadow_node,
        overlay=overlay_path(state_dir, port),
    )


def serving_port(haproxy: HAProxyManager, spec: LocalShadowSpec) -> int | None:
    """The port of the only node with traffic; ``None`` with no traffic or mid-shift (keep
    watching the same node then)."""
    try:
        weights = haproxy.weights(spec.instance_id)
    except InfraError:
        return None
    live = [node for node, weight in weights.items() if weight > 0]
    if len(live) != 1:
        return None
    ports = {spec.primary_node: spec.primary_port, spec.shadow_node: spec.shadow_port}
    return ports.get(live[0])
