"""A Kubernetes cluster whose nodes are namespace hosts, for the tests, the benchmark of the
Kubernetes cutover path and anyone trying the platform on one machine.

The control plane is real (``infra.kubernetes.cluster``); KWOK runs no containers, so each
node's data plane is a namespace host of a :class:`~workers.hosts_lab.HostsLab`: the node's
InternalIP is the host's address, the pods use the node's network, and a pod's PostgreSQL is
made by the host's agent (the primary's by whoever plays the operator, the shadow's by the
platform's provisioning). ``docs/kubernetes.md`` says which parts are API-level only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from contracts.policy import Policy
from contracts.spec import ProtectionSpec
from contracts.spec_kubernetes import KubernetesSection
from infra.kubernetes.api import KubeApi, KubeObject, poll_until, resource_path
from infra.kubernetes.manifests import apply_manifests, load_manifests
from infra.kubernetes.nodes import HOSTNAME_LABEL, ZONE_LABEL, register_fake_node
from infra.kubernetes.placement import AGENT_HOST_LABEL, PG_PORT_NAME
from workers.hosts_lab import HostsLab
from workers.settings import REPO_ROOT

STORAGE_CLASS = "shadowshift-local"
"""Local volumes, bound where the pod is scheduled (no provisioner: the lab makes the volumes,
as an operator of local disks does)."""
LAB_POOL_LABEL = "shadowshift.io/lab-pool"
"""Marks a lab's host nodes: the shadow's node selector keeps it on them."""
WORKER_USER = "shadowshift-worker"
"""The worker's user in a lab: what ``docs/kubernetes/rbac.yaml`` binds, nothing more."""
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


def ensure_namespace(api: KubeApi, name: str) -> None:
    """Namespace ``name``, ready for pods (its ``default`` ServiceAccount exists)."""
    api.apply(resource_path("v1", "namespaces", name=name), {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        field_manager="lab")
    poll_until(lambda: api.find(resource_path("v1", "serviceaccounts", namespace=name,
                                              name="default")),
               timeout_s=30, what=f"ServiceAccount {name}/default")


def ensure_storage_class(api: KubeApi) -> None:
    """:data:`STORAGE_CLASS`: local volumes, bound where the pod is scheduled."""
    api.apply(resource_path("storage.k8s.io/v1", "storageclasses", name=STORAGE_CLASS), {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer"}, field_manager="lab")


@contextlib.contextmanager
def host_nodes(api: KubeApi, lab: HostsLab, pool: str) -> Iterator[dict[str, str]]:
    """A node per host of ``lab`` (own zone, :data:`AGENT_HOST_LABEL`, the host's address,
    :data:`LAB_POOL_LABEL` ``pool``) and the local storage class; yields host -> node, and
    deletes the nodes afterwards."""
    node_of = {host: f"kn-{host}" for host in lab.hosts}
    ensure_storage_class(api)
    try:
        for host, node in node_of.items():
            register_fake_node(api, node, labels={
                ZONE_LABEL: f"zone-{host}", LAB_POOL_LABEL: pool, AGENT_HOST_LABEL: host},
                address=str(lab.hosts[host].address))
        yield node_of
    finally:
        for node in node_of.values():
            api.delete(resource_path("v1", "nodes", name=node))


def kube_spec(lab: HostsLab, pool: str, namespace: str, instance_id: str, primary_pod: str,
              port: int, router_port: int, *, policy: Policy | None = None,
              **section: object) -> ProtectionSpec:
    """A tier-1 spec whose shadow may only land on the lab's nodes of ``pool``."""
    return ProtectionSpec(
        instance_id=instance_id, platform="kubernetes", tier=1, primary_port=port,
        shadow_port=port, router_port=router_port, policy=policy or Policy(),
        replication_user=lab.replication_user,
        kubernetes=KubernetesSection(
            namespace=namespace, primary_pod=primary_pod, storage_class=STORAGE_CLASS,
            storage_size="1Gi", host_network=True, fleet_index=lab.fleet.index,
            node_selector=f"{LAB_POOL_LABEL}={pool}", **section))  # type: ignore[arg-type]


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
    }, field_manager="lab")
    try:
        return poll_until(lambda: _running(api.get(path)), timeout_s=60,
                          what=f"pod {namespace}/{name} running")
    except TimeoutError as err:
        raise TimeoutError(f"{err}; its status: {api.get(path).get('status')}") from None


def _running(pod: KubeObject) -> KubeObject | None:
    status = pod.get("status", {})
    return pod if status.get("phase") == "Running" and status.get("podIP") else None


@contextlib.contextmanager
def local_volumes(api: KubeApi, node_of: dict[str, str], tag: str) -> Iterator[list[str]]:
    """A 1 GiB local volume of the storage class on each node (a bound volume is not reused:
    each instance gets its own); deleted afterwards."""
    names = []
    for host, node in node_of.items():
        name = f"pv-{tag}-{host}"
        api.apply(resource_path("v1", "persistentvolumes", name=name), {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain",
                     "storageClassName": STORAGE_CLASS, "local": {"path": "/data"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}},
        }, field_manager="lab")
        names.append(name)
    try:
        yield names
    finally:
        for name in names:
            api.delete(resource_path("v1", "persistentvolumes", name=name))

