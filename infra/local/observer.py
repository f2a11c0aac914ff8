"""How the fleet watcher reads local protections: the router says which node serves, the node
is sampled and probed directly.

- locate / sample: the node HAProxy sends traffic to (weights), sampled by a
  :class:`~infra.local.metrics.LocalMetricsCollector` kept per node, so its rates have a
  previous reading; after a cutover the former shadow is sampled with a fresh window.
- liveness: libpq's ``PQping`` of the serving node, as ``pg_isready`` uses it (2-s connect
  timeout): a server that refuses our credentials answers, one starting up, shutting down or
  recovering from a crash does not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import pq

from contracts.shadow import PlatformRequest
from infra.errors import InfraError
from infra.local.haproxy import HAProxyManager
from infra.local.metrics import LocalMetricsCollector
from infra.local.postgres import PgEndpoint
from infra.local.spec import LocalShadowSpec
from infra.platform import (
    ALIVE,
    DOWN,
    SHIFTING,
    FleetObserver,
    Liveness,
    Located,
    NodeReading,
    ScheduledEvent,
)

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2
"""libpq's connect timeout for a liveness probe (its smallest useful value)."""


def answers(endpoint: PgEndpoint) -> bool:
    """Whether the server at ``endpoint`` takes connections (``PQping``)."""
    result = pq.PGconn.ping(endpoint.conninfo(connect_timeout=PROBE_TIMEOUT_S).encode())
    if result == pq.Ping.NO_ATTEMPT:  # our connection string is wrong, not the server
        log.warning("Cannot probe %s: invalid connection parameters", endpoint.port)
        return True
    return result == pq.Ping.OK


def is_standby(endpoint: PgEndpoint) -> bool:
    """Whether the server at ``endpoint`` answers and is in recovery (a shadow to promote)."""
    try:
        with psycopg.connect(endpoint.conninfo(connect_timeout=PROBE_TIMEOUT_S),
                             autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])


class LocalObserver(FleetObserver):
    """Local protections of one worker's state directory (one HAProxy)."""

    name = "local"

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._haproxy = HAProxyManager(state_dir / "haproxy")
        self._collectors: dict[tuple[str, int], LocalMetricsCollector] = {}

    def locate(self, instances: Mapping[str, PlatformRequest]) -> dict[str, Located]:
        """The node with all the traffic, per protection (none mid-shift)."""
        found: dict[str, Located] = {}
        for instance_id, request in instances.items():
            located = self._serving(request)
            if located is not None:
                found[instance_id] = located
        return found

    def sample(self, instances: Mapping[str, PlatformRequest], located: Mapping[str, Located],
               now: float) -> dict[str, NodeReading]:
        """A fresh reading of each protection's serving node, every call (a node mid-shift:
        the one sampled last time)."""
        readings: dict[str, NodeReading] = {}
        live = set()
        for instance_id, request in instances.items():
            node = self._serving(request) or located.get(instance_id)
            if node is None:
                continue
            spec = self._spec(request)
            port = spec.port_of(node.node)
            key = (instance_id, port)
            live.add(key)
            collector = self._collectors.get(key)
            if collector is None:
                collector = self._collectors[key] = LocalMetricsCollector(
                    instance_id, PgEndpoint(port=port), haproxy=self._haproxy,
                    server_name=node.node)
            readings[instance_id] = NodeReading(node, collector.sample())
        for gone in set(self._collectors) - live:
            del self._collectors[gone]
        return readings

    def scheduled_events(self, located: Mapping[str, Located]) -> dict[str, list[ScheduledEvent]]:
        """Local nodes announce nothing."""
        return {}

    def liveness(self, instance: PlatformRequest, located: Located) -> Liveness | None:
        """``PQping`` of the node the router serves now."""
        serving = self._serving(instance)
        if serving is None:  # no traffic, or traffic on both: a cutover is shifting it
            return Liveness(SHIFTING, "")
        port = int(serving.identity)
        alive = answers(PgEndpoint(port=port))
        return Liveness(ALIVE if alive else DOWN, serving.identity,
                        f"port {port} has not answered",
                        down=() if alive else ("control",), up=("control",) if alive else ())

    def standby_ready(self, instance: PlatformRequest, located: Located) -> bool:
        """The other node answers as a standby."""
        spec = self._spec(instance)
        return is_standby(PgEndpoint(port=spec.port_of(spec.other_node(located.node))))

    def _serving(self, request: PlatformRequest) -> Located | None:
        spec = self._spec(request)
        node = routed_node(self._haproxy, spec.instance_id, (spec.primary_node, spec.shadow_node))
        return None if node is None else Located(spec.instance_id, node,
                                                 str(spec.port_of(node)))

    def _spec(self, request: PlatformRequest) -> LocalShadowSpec:
        return LocalShadowSpec.from_request(request, self._state_dir)


def routed_node(haproxy: HAProxyManager, service: str, nodes: tuple[str, str]) -> str | None:
    """The one node of ``nodes`` HAProxy gives ``service``'s traffic to; ``None`` mid-shift
    (weight on both or none), for a stranger, or when the router cannot be asked."""
    try:
        weights = haproxy.weights(service)
    except InfraError:
        return None
    live = [node for node, weight in weights.items() if weight > 0]
    return live[0] if len(live) == 1 and live[0] in nodes else None
