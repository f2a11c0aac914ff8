"""The kubernetes platform's refusals and its worker role, against the session's real control
plane: a spec the cluster cannot serve is refused by preflight with the reason and nothing is
created; the worker role of ``docs/kubernetes/rbac.yaml`` is no more than it says.

(What the platform does with a good spec is the conformance suite's and
``tests/workflows/test_kube_protection.py``'s; both run as the worker role.)"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest

from contracts.shadow import PlatformRequest
from contracts.spec import ProtectionSpec
from contracts.spec_kubernetes import KubernetesSection
from infra.errors import InvalidRequestError
from infra.kubernetes.api import KubeApi, KubeApiError, resource_path
from infra.kubernetes.kubeconfig import credentials_from_kubeconfig
from infra.kubernetes.nodes import HOSTNAME_LABEL, ZONE_LABEL, register_fake_node
from infra.pulumi_engine import StackDriver
from tests.kube_world import POOL_LABEL, KubeWorld
from workers.kube_lab import (
    STORAGE_CLASS,
    WORKER_USER,
    ensure_storage_class,
    grant_worker,
    primary_pod,
)
from workers.registry import platforms
from workers.settings import Settings


@pytest.fixture(scope="module")
def pool(kube_world: KubeWorld) -> Iterator[tuple[str, list[str]]]:
    """Two nodes of a pool of this module's own (two zones), and the local storage class."""
    api, name = kube_world.api, f"refusals-{uuid.uuid4().hex[:6]}"
    nodes = [f"kr-{name[-6:]}-a", f"kr-{name[-6:]}-b"]
    ensure_storage_class(api)
    # Loopback addresses for the pods' data plane: every refusal comes before anything
    # connects to them, and if one regressed, nothing but this machine would be asked.
    for node, zone, address in zip(nodes, ("zone-ra", "zone-rb"), ("127.0.0.42", "127.0.0.43"),
                                   strict=True):
        register_fake_node(api, node, labels={ZONE_LABEL: zone, POOL_LABEL: name},
                           address=address)
    yield name, nodes
    for node in nodes:
        api.delete(resource_path("v1", "nodes", name=node))


def _spec(in_namespace: str, pool: str, **section: object) -> ProtectionSpec:
    fields = {"namespace": in_namespace, "primary_pod": "pg-main",
              "storage_class": STORAGE_CLASS, "node_selector": f"{POOL_LABEL}={pool}",
              **section}
    return ProtectionSpec(instance_id="orders", platform="kubernetes", tier=1,
                          primary_port=5432, shadow_port=5432, router_port=6432,
                          kubernetes=KubernetesSection(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "reason"), [
    ({"namespace": "no-such-namespace"}, "kubernetes.namespace 'no-such-namespace' does not "
                                         "exist in the cluster"),
    ({"primary_pod": "pg-gone"}, "kubernetes.primary_pod 'pg-gone' does not exist"),
    ({"storage_class": "gold-ssd"}, f"kubernetes.storage_class 'gold-ssd' does not exist; "
                                    f"the cluster has {STORAGE_CLASS}"),
    ({"route": "orders-db"}, "kubernetes.route 'orders-db': no TCPRoute of that name"),
    ({"node_selector": "{pool-of-one}"}, "no node can take the shadow: its required "
                                         "anti-affinity puts it on another node in another "
                                         "zone than the primary's"),
])
def test_preflight_refuses_what_the_cluster_cannot_serve_and_creates_nothing(
    change: dict[str, str], reason: str, kube_world: KubeWorld, namespace: str,
    pool: tuple[str, list[str]], settings: Settings, stack_driver: StackDriver,
) -> None:
    """Unknown namespace, pod, storage class or route, and a pool of one node (no node
    satisfies the anti-affinity): InvalidRequestError naming the field, and afterwards no
    stack, no shadow pod, claim, budget or Service."""
    name, nodes = pool
    api = kube_world.api
    primary_pod(api, namespace, "pg-main", nodes[0], 5432)
    if change.get("node_selector") == "{pool-of-one}":
        change = {"node_selector": f"{HOSTNAME_LABEL}={nodes[0]}"}
    spec = _spec(namespace, name, **change)
    served = platforms(dataclasses.replace(settings, kubeconfig=kube_world.cluster.kubeconfig))
    platform = served.platform_for(PlatformRequest(spec))
    with pytest.raises(InvalidRequestError) as refused:
        platform.provision_shadow()
    assert reason in str(refused.value), refused.value
    assert not stack_driver.exists(f"shadow-{spec.instance_id}")
    pods = api.get(resource_path("v1", "pods", namespace=namespace))["items"]
    assert [p["metadata"]["name"] for p in pods] == ["pg-main"]
    for plural in ("persistentvolumeclaims", "services"):
        assert api.get(resource_path("v1", plural, namespace=namespace))["items"] == []
    budgets = resource_path("policy/v1", "poddisruptionbudgets", namespace=namespace)
    assert api.get(budgets)["items"] == []


def test_the_worker_role_grants_no_more_than_the_platform_uses(
        kube_world: KubeWorld, namespace: str) -> None:
    """Bound to ``docs/kubernetes/rbac.yaml``, the worker may label pods in its namespace,
    but may not read secrets there, touch pods elsewhere, or change nodes."""
    grant_worker(kube_world.api, namespace)
    worker = KubeApi(credentials_from_kubeconfig(kube_world.cluster.user_kubeconfig(
        WORKER_USER)))
    assert worker.get(resource_path("v1", "pods", namespace=namespace))["items"] == []
    forbidden = [
        ("GET", resource_path("v1", "secrets", namespace=namespace)),
        ("GET", resource_path("v1", "pods", namespace="kube-system")),
        ("DELETE", resource_path("v1", "nodes", name=next(iter(kube_world.node_zones)))),
        ("GET", resource_path("v1", "configmaps", namespace=namespace)),
    ]
    for method, path in forbidden:
        with pytest.raises(KubeApiError) as refused:
            worker.request(method, path)
        assert refused.value.status == 403, (method, path)
