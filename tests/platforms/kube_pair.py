"""A protected pair on the kubernetes platform: the session's real control plane (etcd,
kube-apiserver, controller-manager, scheduler, KWOK), two fake nodes whose data plane is
played by the module's two namespace hosts (each node's InternalIP is its host's address, so
a ``hostNetwork`` pod's address is where its PostgreSQL listens), a primary pod the operator
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
from contracts.spec_kubernetes import KubernetesSection
from infra.kubernetes.api import KubeApi, KubeObject, poll_until, resource_path
from infra.kubernetes.manifests import apply_manifests, load_manifests
from infra.kubernetes.nodes import HOSTNAME_LABEL, ZONE_LABEL, register_fake_node
from infra.kubernetes.placement import PG_PORT_NAME
from tests.kube_world import POOL_LABEL, KubeWorld
from tests.platforms.hosts_pair import HostsWorld
from workers.settings import REPO_ROOT

STORAGE_CLASS = "shadowshift-local"
"""Local volumes, bound where the pod is scheduled (no provisioner: the test makes the
volumes, as an operator of local disks does)."""
AGENT_HOST_LABEL = "shadowshift.io/agent-host"
WORKER_USER = "shadowshift-worker"
"""The user the tests' worker is: what ``docs/kubernetes/rbac.yaml`` binds, nothing more."""
RBAC = REPO_ROOT / "docs" / "kubernetes" / "rbac.yaml"


def grant_worker(api: KubeApi, namespace: str) -> None:
    """Apply ``docs/kubernetes/rbac.yaml`` for ``namespace``, bound to :data:`WORKER_USER`."""
    objects = load_manifests([RBAC])
    for obj in objects:
        if obj["kind"] in ("Role", "RoleBinding"):
            obj["metadata"]["namespace"] = namespace
        if "subjects" in obj:
            obj["subjects"] = [{"kind": "User", "name": WORKER_USER,
                                "apiGroup": "rbac.authorization.k8s.io"}]
    apply_manifests(api, objects)


@dataclass(frozen=True)
class KubeNodes:
    """The module's two nodes, each played by one namespace host."""

    kube: KubeWorld
    """The session's control plane."""
    hosts: HostsWorld
    """The hosts and their agents."""
    pool: str
    """Value of ``POOL_LABEL`` on these two nodes only (the shadow's node selector)."""
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
        return ProtectionSpec(
            instance_id=instance_id, platform="kubernetes", tier=1, primary_port=port,
            shadow_port=port, router_port=router_port,
            kubernetes=KubernetesSection(
                namespace=namespace, primary_pod=primary_pod, storage_class=STORAGE_CLASS,
                storage_size="1Gi", host_network=True,
                fleet_index=self.hosts.lab.fleet.index,
                node_selector=f"{POOL_LABEL}={self.pool}", **section))  # type: ignore[arg-type]


@contextlib.contextmanager
def kube_nodes(kube: KubeWorld, hosts: HostsWorld) -> Iterator[KubeNodes]:
    """Register a node per host (own zone, agent-host label, the host's address), and the
    local storage class; the nodes are deleted afterwards."""
    api, pool = kube.api, f"hosts-{uuid.uuid4().hex[:6]}"
    node_of = {host: f"kn-{host}" for host in hosts.hosts}
    api.apply(resource_path("storage.k8s.io/v1", "storageclasses", name=STORAGE_CLASS), {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer"}, field_manager="tests")
    try:
        for host, node in node_of.items():
            register_fake_node(api, node, labels={
                ZONE_LABEL: f"zone-{host}", POOL_LABEL: pool, AGENT_HOST_LABEL: host},
                address=str(hosts.lab.hosts[host].address))
        yield KubeNodes(kube, hosts, pool, node_of, kube.cluster.user_kubeconfig(WORKER_USER))
    finally:
        for node in node_of.values():
            api.delete(resource_path("v1", "nodes", name=node))


def primary_pod(api: KubeApi, namespace: str, name: str, node: str, port: int) -> KubeObject:
    """The operator's primary pod, placed on ``node`` by the scheduler (a node selector), its
    PostgreSQL port named; returned once it runs with its address."""
    path = resource_path("v1", "pods", namespace=namespace, name=name)
    api.apply(path, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                          "labels": {"app": "orders-db"}},
        "spec": {"hostNetwork": True, "nodeSelector": {HOSTNAME_LABEL: node},
                 "containers": [{"name": "postgres", "image": "postgres:17", "ports": [
                     {"name": PG_PORT_NAME, "containerPort": port}]}]},
    }, field_manager="tests")
    try:
        return poll_until(lambda: _running(api.get(path)), timeout_s=60,
                          what=f"pod {namespace}/{name} running")
    except TimeoutError as err:
        raise AssertionError(f"{err}; its status: {api.get(path).get('status')}") from None


def _running(pod: KubeObject) -> KubeObject | None:
    status = pod.get("status", {})
    return pod if status.get("phase") == "Running" and status.get("podIP") else None


@contextlib.contextmanager
def local_volumes(api: KubeApi, nodes: KubeNodes, tag: str) -> Iterator[list[str]]:
    """A 1 GiB local volume of the storage class on each node (a bound volume is not reused:
    each test makes its own); deleted afterwards."""
    names = []
    for host, node in nodes.node_of.items():
        name = f"pv-{tag}-{host}"
        api.apply(resource_path("v1", "persistentvolumes", name=name), {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain",
                     "storageClassName": STORAGE_CLASS, "local": {"path": "/data"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}},
        }, field_manager="tests")
        names.append(name)
    try:
        yield names
    finally:
        for name in names:
            api.delete(resource_path("v1", "persistentvolumes", name=name))
