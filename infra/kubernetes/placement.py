"""What a protected instance on Kubernetes is made of: two pods, and the names of the objects
around them.

Node names follow the other platforms (the original primary is named after the instance, the
shadow ``<id>-shadow``); the original primary's pod is the operator's (``primary_pod``), the
shadow's pod is ours and carries the shadow's node name. Where each pod runs is the
scheduler's choice, read back from the API: :meth:`KubeShadowSpec.hosts` turns the two pods'
placements into the hosts platform's view, whose agents and SQL do the data plane's work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts.shadow import PlatformRequest
from contracts.spec_hosts import HostPlacement, HostsSection
from contracts.spec_kubernetes import KubernetesSection
from infra.errors import InvalidRequestError
from infra.hosts.network import router_address
from infra.hosts.placement import HostsShadowSpec
from infra.names import validate_instance_id

INSTANCE_LABEL = "shadowshift.io/instance"
"""On both pods: the protected instance (the anti-affinity and the PDB select on it)."""
NODE_LABEL = "shadowshift.io/node"
"""On both pods: the ShadowShift node the pod is (the route's per-node Services select it)."""
ROLE_LABEL = "shadowshift.io/role"
"""On both pods: ``primary``, ``replica`` or ``fenced``; the ``<id>-rw`` Service selects
``primary`` (CloudNativePG's way: a switchover relabels pods and the Service follows)."""
AGENT_HOST_LABEL = "shadowshift.io/agent-host"
"""On a cluster Node: the agent that serves the pods on it, when that is not the pod's own
sidecar (development clusters whose nodes are namespace hosts)."""
PRIMARY, REPLICA, FENCED = "primary", "replica", "fenced"
"""Values of :data:`ROLE_LABEL`."""
PG_PORT_NAME = "postgres"
"""Name of the PostgreSQL container port, which the Services target (the two pods may listen
on different ports)."""
SERVICE_PORT = 5432
"""Port of the instance's Services."""


@dataclass(frozen=True, kw_only=True)
class KubeShadowSpec:
    """One protected PostgreSQL as two pods."""

    instance_id: str
    """Validated id: names the stack, the Services and the nodes."""
    section: KubernetesSection
    """The spec's kubernetes section."""
    primary_port: int
    """Port of the original primary's PostgreSQL."""
    shadow_port: int
    """Port of the shadow's PostgreSQL."""
    router_port: int
    """HAProxy frontend port on the control worker's machine."""
    state_dir: Path
    """The control worker's state directory."""
    tier: int = 2
    """1 synchronous, 2 asynchronous."""
    replication_user: str = "postgres"
    """Role the standby replicates as."""
    serving_node: str = ""
    """Node that is the primary now (empty: the original primary)."""
    copy_alongside: bool = False
    """Provisioning: the standby's copy runs alongside."""

    def __post_init__(self) -> None:
        validate_instance_id(self.instance_id)
        if self.serving_node not in ("", self.primary_node, self.shadow_node):
            raise InvalidRequestError(f"serving_node {self.serving_node!r} is not one of "
                                      f"{self.primary_node!r}, {self.shadow_node!r}")

    @classmethod
    def from_request(cls, request: PlatformRequest, state_dir: Path) -> KubeShadowSpec:
        """The Kubernetes view of a protection request.

        Raises:
            InvalidRequestError: the request has no kubernetes section.
        """
        spec = request.spec
        if spec.kubernetes is None:
            raise InvalidRequestError("platform kubernetes needs the spec's kubernetes section")
        return cls(instance_id=spec.instance_id, section=spec.kubernetes,
                   primary_port=spec.primary_port, shadow_port=spec.shadow_port,
                   router_port=spec.router_port, state_dir=state_dir, tier=spec.tier,
                   replication_user=spec.replication_user, serving_node=request.serving_node,
                   copy_alongside=request.copy_alongside)

    # -- names -----------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """Where both pods and every object of ours live."""
        return self.section.namespace

    @property
    def stack_name(self) -> str:
        """Pulumi stack of the instance's shadow (Kubernetes objects and router entries)."""
        return f"shadow-{self.instance_id}"

    @property
    def primary_node(self) -> str:
        """The original primary's node name."""
        return self.instance_id

    @property
    def shadow_node(self) -> str:
        """The shadow's node name, which is also its pod's name."""
        return f"{self.instance_id}-shadow"

    @property
    def rw_service(self) -> str:
        """The Service clients in the cluster use: it selects the pod labelled primary."""
        return f"{self.instance_id}-rw"

    def node_service(self, node: str) -> str:
        """The Service of one node (a TCPRoute's ``backendRefs`` weigh these)."""
        return f"{self._check(node)}-node"

    @property
    def budget_name(self) -> str:
        """The PodDisruptionBudget that keeps a drain from evicting the primary."""
        return f"{self.instance_id}-primary"

    @property
    def claim_name(self) -> str:
        """The shadow's PersistentVolumeClaim."""
        return f"{self.shadow_node}-data"

    def pod_of(self, node: str) -> str:
        """The pod that is ``node``."""
        return self.section.primary_pod if self._check(node) == self.primary_node \
            else self.shadow_node

    def port_of(self, node: str) -> int:
        """``node``'s PostgreSQL port."""
        return self.shadow_port if self._check(node) == self.shadow_node else self.primary_port

    # -- roles -----------------------------------------------------------------------------

    @property
    def current_primary(self) -> str:
        """The node that serves now."""
        return self.serving_node or self.primary_node

    @property
    def standby_node(self) -> str:
        """The node that is the standby now."""
        return self.other_node(self.current_primary)

    def other_node(self, node: str) -> str:
        """The node of the pair that is not ``node``."""
        return self.shadow_node if self._check(node) == self.primary_node else self.primary_node

    def hosts(self, primary: HostPlacement, shadow: HostPlacement) -> HostsShadowSpec:
        """The hosts platform's view, given where the original primary's and the shadow's
        pods run (their agent and address)."""
        index = self.section.fleet_index
        section = HostsSection(primary=primary, shadow=shadow, fleet_index=index,
                               router_source="" if index is None else str(router_address(index)))
        return HostsShadowSpec(
            instance_id=self.instance_id, section=section, primary_port=self.primary_port,
            shadow_port=self.shadow_port, router_port=self.router_port,
            state_dir=self.state_dir, tier=self.tier, replication_user=self.replication_user,
            serving_node=self.serving_node, copy_alongside=self.copy_alongside)

    def _check(self, node: str) -> str:
        if node not in (self.primary_node, self.shadow_node):
            raise InvalidRequestError(f"unknown node {node!r} of {self.instance_id}")
        return node
