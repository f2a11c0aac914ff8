"""A protected pair on the kubernetes platform: the session's real control plane (etcd,
kube-apiserver, controller-manager, scheduler, KWOK), two fake nodes whose data plane is
played by the module's two namespace hosts (``workers.kube_lab``), a primary pod the operator
would have, and a local PersistentVolume on each node for the shadow's claim.

KWOK runs no containers: each pod's PostgreSQL is made by its host's agent (the primary by the
test, the shadow by the platform's provisioning), which is what ``docs/kubernetes.md`` calls
the API-level part.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from contracts.spec import ProtectionSpec
from infra.kubernetes.api import KubeApi
from tests.kube_world import KubeWorld
from tests.platforms.hosts_pair import HostsWorld
from workers.kube_lab import WORKER_USER, host_nodes, kube_spec


@dataclass(frozen=True)
class KubeNodes:
    """The module's two nodes, each played by one namespace host."""

    kube: KubeWorld
    """The session's control plane."""
    hosts: HostsWorld
    """The hosts and their agents."""
    pool: str
    """The lab pool of these two nodes only (the shadow's node selector)."""
    node_of: dict[str, str]
    """Host name -> its node's name."""
    worker_kubeconfig: Path
    """The worker's identity: a user bound to ``docs/kubernetes/rbac.yaml`` only."""

    @property
    def api(self) -> KubeApi:
        """An admin client."""
        return self.kube.api

    def spec(self, namespace: str, instance_id: str, primary_pod: str, port: int,
             router_port: int, **section: object) -> ProtectionSpec:
        """A tier-1 spec whose shadow may only land on this module's nodes."""
        return kube_spec(self.hosts.lab, self.pool, namespace, instance_id, primary_pod, port,
                         router_port, **section)


@contextlib.contextmanager
def kube_nodes(kube: KubeWorld, hosts: HostsWorld) -> Iterator[KubeNodes]:
    """A node per host of the module (``workers.kube_lab.host_nodes``), deleted after."""
    pool = f"hosts-{uuid.uuid4().hex[:6]}"
    with host_nodes(kube.api, hosts.lab, pool) as node_of:
        yield KubeNodes(kube, hosts, pool, node_of,
                        kube.cluster.user_kubeconfig(WORKER_USER))
