"""What a protected instance on the hosts platform is made of: two nodes on two hosts.

Like the local platform's spec, node names are fixed (the original primary is named after the
instance, the shadow ``<id>-shadow``) and so are their hosts, addresses and ports; cutovers swap
the roles (``serving_node``), and the role properties follow them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts.agent_tasks import AgentCall, PrimarySource, ServerRef
from contracts.shadow import PlatformRequest
from contracts.spec_hosts import HostPlacement, HostsSection
from contracts.version import VERSION
from infra.errors import InvalidRequestError
from infra.hosts.network import host_netns
from infra.local.postgres import PgEndpoint
from infra.names import validate_instance_id


@dataclass(frozen=True, kw_only=True)
class HostsShadowSpec:
    """One protected PostgreSQL on two hosts."""

    instance_id: str
    """Validated id: names the stack, the router service and the nodes."""
    section: HostsSection
    """The spec's hosts section."""
    primary_port: int
    """Port of the original primary on its host."""
    shadow_port: int
    """Port of the shadow on its host."""
    router_port: int
    """HAProxy frontend port on the control worker's machine."""
    state_dir: Path
    """The control worker's state directory (HAProxy lives under it)."""
    tier: int = 2
    """1 synchronous, 2 asynchronous."""
    replication_user: str = "postgres"
    """Role the standby replicates as."""
    serving_node: str = ""
    """Node that is the primary now (empty: the original primary)."""
    copy_alongside: bool = False
    """Provisioning: the standby's copy runs alongside (``PlatformRequest.copy_alongside``)."""
    replication_sslmode: str = "disable"
    """The worker's ``SHADOWSHIFT_PG_REPLICATION_SSLMODE``: ``verify-full`` refuses a primary
    that serves no TLS (its agent has no ``SHADOWSHIFT_PG_TLS_*`` files). How a standby
    connects is its host's agent's to decide (``activities.agent_security``)."""
    server_ca: Path | None = None
    """The worker's CA of the hosts' servers (``ReplicationSecurity.server_ca``): every SQL
    session of the control worker to a node uses ``sslmode=verify-full`` with it (each host's
    certificate names its address); ``None``: libpq's default."""

    def __post_init__(self) -> None:
        validate_instance_id(self.instance_id)
        if self.serving_node not in ("", self.primary_node, self.shadow_node):
            raise InvalidRequestError(f"serving_node {self.serving_node!r} is not one of "
                                      f"{self.primary_node!r}, {self.shadow_node!r}")
        if self.section.fleet_index is not None:
            for place in (self.section.primary, self.section.shadow):
                if len(place.host) > 9:
                    raise InvalidRequestError(
                        f"host {place.host!r}: namespace hosts have names of at most 9 "
                        "characters (their network namespace is ss<N>-<name>)")
        if self.tier not in (1, 2):
            raise InvalidRequestError(
                f"tier {self.tier} is not available on the hosts platform: tier 3 ships WAL "
                "through a shared archive the hosts do not have; use tier 1 or 2")

    @classmethod
    def from_request(cls, request: PlatformRequest, state_dir: Path,
                     replication_sslmode: str = "disable",
                     server_ca: Path | None = None) -> HostsShadowSpec:
        """The hosts view of a protection request (``replication_sslmode``, ``server_ca``:
        the worker's).

        Raises:
            InvalidRequestError: the request has no hosts section.
        """
        spec = request.spec
        if spec.hosts is None:
            raise InvalidRequestError("platform hosts needs the spec's hosts section")
        return cls(instance_id=spec.instance_id, section=spec.hosts,
                   primary_port=spec.primary_port, shadow_port=spec.shadow_port,
                   router_port=spec.router_port, state_dir=state_dir, tier=spec.tier,
                   replication_user=spec.replication_user, serving_node=request.serving_node,
                   copy_alongside=request.copy_alongside,
                   replication_sslmode=replication_sslmode, server_ca=server_ca)

    # -- names -----------------------------------------------------------------------------

    @property
    def stack_name(self) -> str:
        """Pulumi stack of the instance's shadow (router entries, slot, tier settings)."""
        return f"shadow-{self.instance_id}"

    @property
    def primary_node(self) -> str:
        """The original primary's node name."""
        return self.instance_id

    @property
    def shadow_node(self) -> str:
        """The shadow's node name (and ``application_name``)."""
        return f"{self.instance_id}-shadow"

    @property
    def haproxy_dir(self) -> Path:
        """The router's folder (shared with the local platform on the same worker)."""
        return self.state_dir / "haproxy"

    def other_node(self, node: str) -> str:
        """The node of the pair that is not ``node``."""
        return self.shadow_node if self._check(node) == self.primary_node else self.primary_node

    # -- roles -----------------------------------------------------------------------------

    @property
    def current_primary(self) -> str:
        """The node that serves now."""
        return self.serving_node or self.primary_node

    @property
    def standby_node(self) -> str:
        """The node that is the standby now."""
        return self.other_node(self.current_primary)

    def slot_for(self, node: str) -> str:
        """Slot on the primary that keeps WAL for standby ``node``; a node made anew on a
        spare host gets a new slot (``_m<moves>``), so the lost host's standby, if it ever
        returns, has none to stream from."""
        moved = self.placement_of(node).moved
        return f"shadowshift_{self._check(node).replace('-', '_')}" + (
            f"_m{moved}" if moved else "")

    # -- nodes by name (fixed) -------------------------------------------------------------

    def placement_of(self, node: str) -> HostPlacement:
        """The host ``node`` lives on."""
        return self.section.shadow if self._check(node) == self.shadow_node \
            else self.section.primary

    def host_of(self, node: str) -> str:
        """Name of ``node``'s host (its agent's queue suffix)."""
        return self.placement_of(node).host

    def port_of(self, node: str) -> int:
        """``node``'s port on its host."""
        return self.shadow_port if self._check(node) == self.shadow_node else self.primary_port

    def endpoint_of(self, node: str) -> PgEndpoint:
        """Superuser endpoint of ``node`` from the control worker (``verify-full`` against
        :attr:`server_ca` when the worker has one)."""
        return PgEndpoint(host=self.placement_of(node).address, port=self.port_of(node),
                          ca_file=self.server_ca)

    def server_of(self, node: str) -> ServerRef:
        """What ``node``'s agent calls the server."""
        return ServerRef(self.instance_id, node, self.port_of(node))

    def call(self, node: str) -> AgentCall:
        """An agent call about ``node``'s server."""
        return AgentCall(VERSION, self.server_of(node))

    def source_for(self, standby: str) -> PrimarySource:
        """Where standby ``standby`` streams from: the other node, through its slot."""
        primary = self.other_node(standby)
        return PrimarySource(self.placement_of(primary).address, self.port_of(primary),
                             self.replication_user, self.slot_for(standby))

    def netns_of(self, node: str) -> str | None:
        """The network namespace of ``node``'s host, for namespace hosts (else ``None``)."""
        index = self.section.fleet_index
        return None if index is None else host_netns(index, self.host_of(node))

    def _check(self, node: str) -> str:
        if node not in (self.primary_node, self.shadow_node):
            raise InvalidRequestError(f"unknown node {node!r} of {self.instance_id}")
        return node
