"""The cutover's side of the Platform contract for PostgreSQL behind HAProxy, shared by every
platform whose nodes are PostgreSQL servers reached over the network and whose router is our
HAProxy (``local``: both on this machine; ``hosts``: servers on namespace or VM hosts).

A mixin: the platform supplies how to reach a node (:meth:`_endpoint`), its HAProxy, its
service name and cached sessions; everything here is the same SQL and runtime-API commands
whatever host a server runs on.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

from infra.errors import InvalidRequestError
from infra.local import fencing
from infra.local.haproxy import HAProxyManager
from infra.local.postgres import PgEndpoint
from infra.platform import Health, ReplicationStatus


class RoutedPostgres(abc.ABC):
    """Fencing, promotion, positions and router weights of PostgreSQL nodes behind HAProxy."""

    haproxy: HAProxyManager
    """The router."""
    sessions: fencing.NodeSessions
    """Cached connections for the cutover's short round trips."""

    @property
    @abc.abstractmethod
    def service(self) -> str:
        """The instance's HAProxy service (frontend and backend) name."""

    @property
    @abc.abstractmethod
    def router_endpoint(self) -> PgEndpoint:
        """Where clients reach the instance through the router."""

    @abc.abstractmethod
    def nodes(self) -> tuple[str, str]:
        """``(original primary, shadow)``."""

    @abc.abstractmethod
    def _endpoint(self, node: str) -> PgEndpoint:
        """How this worker reaches ``node``'s server."""

    def get_weights(self) -> dict[str, int]:
        """HAProxy weight per node (0 for nodes in maintenance)."""
        return self.haproxy.weights(self.service)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Set weights absolutely; 0..100 maps one to one onto HAProxy weights.

        A node given a positive weight is also taken out of maintenance, so restoring the
        weights after :meth:`fence_router` is one call.
        """
        for node, weight in weights.items():
            if not 0 <= weight <= 100:
                raise InvalidRequestError(f"weight {weight} for {node} is outside 0..100")
        service = self.service
        lines: list[str] = []
        for node, weight in weights.items():  # in the caller's order: lower before raise
            lines.append(self.haproxy.weight_command(service, node, weight))
            if weight > 0:
                lines.append(self.haproxy.state_command(service, node, True))
        self.haproxy.commands(lines)  # one runtime-API round trip for all of them

    def fence(self, node: str) -> None:
        """Out of the router (weight 0), read-only confirmed, client sessions ended.

        The read-only setting is written (and fsynced) before the weight changes: until the
        reload nothing changes for clients, so the slow part stays out of their blackout.
        """
        endpoint = self._endpoint(node)
        fencing.persist_read_only(self.sessions, endpoint, True)
        self.haproxy.set_weight(self.service, node, 0)
        fencing.reload_read_only(self.sessions, endpoint, True)
        fencing.end_client_sessions(self.sessions, endpoint)

    def unfence(self, node: str) -> None:
        """Writable again (the router weight is restored separately, absolutely)."""
        fencing.set_read_only(self.sessions, self._endpoint(node), False)

    def promote(self, node: str) -> None:
        """``pg_promote`` the standby and wait until it accepts writes (no-op when it does)."""
        fencing.promote_server(self.sessions, self._endpoint(node))

    def probe(self, node: str) -> Health:
        """Ask the node (on a cached session) whether it is a writable primary."""
        return fencing.probe_server(self.sessions, self._endpoint(node))

    def fence_router(self, node: str) -> None:
        """Weight 0, maintenance, router sessions closed: needs nothing from the node."""
        service = self.service
        self.haproxy.commands([
            self.haproxy.weight_command(service, node, 0),
            self.haproxy.state_command(service, node, False),
            self.haproxy.shutdown_command(service, node),
        ])

    def close_router_sessions(self, node: str) -> None:
        """Close sessions HAProxy still holds to ``node``."""
        self.haproxy.shutdown_sessions(self.service, node)

    def final_position(self, node: str) -> str:
        """Flushed WAL position of a (fenced) primary; replayed position of a standby."""
        return fencing.flushed_position(self.sessions, self._endpoint(node))

    def replay_gap(self, node: str, position: str | None = None) -> int:
        """WAL bytes standby ``node`` has yet to replay to reach ``position``."""
        return fencing.replay_gap(self.sessions, self._endpoint(node), position)

    def replication_between(self, source: str, target: str) -> ReplicationStatus:
        """Standby ``target`` as primary ``source``'s ``pg_stat_replication`` shows it."""
        return fencing.stream_state(self.sessions, self._endpoint(source), target)

    def prepare_cutover(self, source: str) -> None:
        """``CHECKPOINT`` on the source while clients still write: it becomes the last one
        both sides share, so a later ``pg_rewind`` of the former primary reads little WAL,
        and its I/O burst is over before the fence (it used to sit right before the window)."""
        self.sessions.run(self._endpoint(source), "CHECKPOINT")

    def routes_service(self) -> bool:
        """HAProxy runs and has this instance's service."""
        return self.haproxy.running() and self.service in self.haproxy.services()

    def write_through_router(self, check_id: str) -> str:
        """Upsert through HAProxy; the node whose port answered."""
        address, port = fencing.write_through(self.router_endpoint, check_id)
        by_address = {(self._endpoint(node).host, self._endpoint(node).port): node
                      for node in self.nodes()}
        return by_address.get((address, port), f"{address}:{port}")
