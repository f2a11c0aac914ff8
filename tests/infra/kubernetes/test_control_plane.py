"""The loopback control plane behaves like a real cluster where the Kubernetes platform will
rely on it: the scheduler enforces anti-affinity, KWOK runs what is scheduled, the Gateway API
schema takes weighted routes, and a selector Service leaves a hand-managed EndpointSlice alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.kubernetes.api import KubeApi, KubeApiError, KubeObject, poll_until, resource_path
from infra.kubernetes.nodes import ZONE_LABEL
from tests.infra.kubernetes.conftest import POOL_LABEL, KubeWorld

GATEWAY_API = "gateway.networking.k8s.io/v1"
SHADOWSHIFT_SLICE_MANAGER = "cutover.shadowshift.io"
CONTROLLER_SLICE_MANAGER = "endpointslice-controller.k8s.io"


def _pod(name: str, labels: dict[str, str], pool: str, **spec: Any) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {POOL_LABEL: pool},
            "containers": [{"name": "postgres", "image": "postgres:17"}],
            **spec,
        },
    }


def _zone_anti_affinity(labels: dict[str, str]) -> dict[str, Any]:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": ZONE_LABEL},
    ]}}


def _pods(api: KubeApi, namespace: str) -> list[KubeObject]:
    items: list[KubeObject] = api.get(resource_path("v1", "pods", namespace=namespace))["items"]
    return items


def _running(pod: KubeObject) -> bool:
    return bool(pod.get("status", {}).get("phase") == "Running" and pod["spec"].get("nodeName"))


def _unschedulable(pod: KubeObject) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in conditions)


def test_required_zone_anti_affinity_places_one_pod_per_zone(kube_world: KubeWorld,
                                                              namespace: str) -> None:
    """Three pods that may not share a zone: two run, one on each zone's node, and the third
    stays Pending as Unschedulable because no zone is left (the scheduler decided, not us)."""
    api, labels = kube_world.api, {"app": "db"}
    for index in range(3):
        api.create(resource_path("v1", "pods", namespace=namespace), _pod(
            f"db-{index}", labels, kube_world.pool, affinity=_zone_anti_affinity(labels)))

    def settled() -> tuple[list[KubeObject], list[KubeObject]] | None:
        pods = _pods(api, namespace)
        running = [p for p in pods if _running(p)]
        waiting = [p for p in pods if _unschedulable(p)]
        return (running, waiting) if len(running) == 2 and len(waiting) == 1 else None

    running, waiting = poll_until(settled, timeout_s=60, what="two pods Running, one Pending")
    zones = {kube_world.node_zones[p["spec"]["nodeName"]] for p in running}
    assert zones == {"zone-a", "zone-b"}
    assert waiting[0]["status"]["phase"] == "Pending"
    assert "anti-affinity" in str(waiting[0]["status"]["conditions"])


def _tcp_route(weights: dict[str, int]) -> KubeObject:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "TCPRoute",
        "metadata": {"name": "postgres"},
        "spec": {
            "parentRefs": [{"name": "shadowshift", "sectionName": "postgres"}],
            "rules": [{"backendRefs": [
                {"name": service, "port": 5432, "weight": weight}
                for service, weight in weights.items()
            ]}],
        },
    }


def _weights(route: KubeObject) -> dict[str, int]:
    refs = route["spec"]["rules"][0]["backendRefs"]
    return {ref["name"]: ref["weight"] for ref in refs}


def test_tcp_route_takes_absolute_backend_weights(kube_world: KubeWorld, namespace: str) -> None:
    """A TCPRoute (standard channel in Gateway API v1.6) with two weighted backendRefs is
    stored as sent; swapping the weights absolutely (100/0 to 0/100) reads back as set, and a
    negative weight is refused by the CRD's real schema."""
    api = kube_world.api
    services = resource_path("v1", "services", namespace=namespace)
    for name in ("primary", "shadow"):
        api.create(services, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                              "spec": {"ports": [{"name": "postgres", "port": 5432}]}})
    routes = resource_path(GATEWAY_API, "tcproutes", namespace=namespace)
    created = api.create(routes, _tcp_route({"primary": 100, "shadow": 0}))
    assert _weights(created) == {"primary": 100, "shadow": 0}

    route = f"{routes}/postgres"
    api.merge_patch(route, {"spec": _tcp_route({"primary": 0, "shadow": 100})["spec"]})
    assert _weights(api.get(route)) == {"primary": 0, "shadow": 100}

    with pytest.raises(KubeApiError) as refused:
        api.merge_patch(route, {"spec": _tcp_route({"primary": -1, "shadow": 100})["spec"]})
    assert refused.value.status == 422


def test_selector_service_leaves_a_hand_managed_endpoint_slice_alone(
        kube_world: KubeWorld, namespace: str) -> None:
    """For a Service with a selector, the endpointslice controller keeps its own slice with the
    KWOK pod's address, and the slice we manage (pointing at a namespace host's address) stays
    exactly as we wrote it: the cutover can own the data path's endpoint."""
    api = kube_world.api
    api.create(resource_path("v1", "services", namespace=namespace), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "pg"},
        "spec": {"selector": {"role": "primary"},
                 "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432}]},
    })
    slices = resource_path("discovery.k8s.io/v1", "endpointslices", namespace=namespace)
    ours = api.create(slices, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "pg-shadowshift", "labels": {
            "kubernetes.io/service-name": "pg",
            "endpointslice.kubernetes.io/managed-by": SHADOWSHIFT_SLICE_MANAGER,
        }},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["198.18.0.10"], "conditions": {"ready": True}}],
        "ports": [{"name": "postgres", "port": 5432, "protocol": "TCP"}],
    })
    api.create(resource_path("v1", "pods", namespace=namespace),
               _pod("pg-0", {"role": "primary"}, kube_world.pool))

    def pod_ip() -> str | None:
        pod = api.get(resource_path("v1", "pods", namespace=namespace, name="pg-0"))
        return pod.get("status", {}).get("podIP") if _running(pod) else None

    ip = poll_until(pod_ip, timeout_s=60, what="pod pg-0 Running with an IP")

    def controller_slice_has_pod() -> bool:
        selector = (f"kubernetes.io/service-name=pg,"
                    f"endpointslice.kubernetes.io/managed-by={CONTROLLER_SLICE_MANAGER}")
        found = api.get(slices, query={"labelSelector": selector})["items"]
        return any(ip in e["addresses"] and e["conditions"].get("ready")
                   for s in found for e in s.get("endpoints") or [])

    poll_until(controller_slice_has_pod, timeout_s=60,
               what="the controller's EndpointSlice lists the pod")
    now = api.get(f"{slices}/pg-shadowshift")
    assert now["endpoints"] == ours["endpoints"]
    assert now["metadata"]["resourceVersion"] == ours["metadata"]["resourceVersion"]
