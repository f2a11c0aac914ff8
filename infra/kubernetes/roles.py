"""Reading and changing what the cluster says about an instance's two pods: where each runs,
which one carries the ``primary`` role label, what the ``<id>-rw`` Service's EndpointSlices
publish, and the weights of its TCPRoute.

Every change here is absolute (a label set to a value, weights set to numbers), so repeating
it after a crash converges.
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts.spec_hosts import HostPlacement
from infra.errors import InfraError, InvalidRequestError
from infra.kubernetes.api import KubeApi, KubeApiError, KubeObject, poll_until, resource_path
from infra.kubernetes.placement import AGENT_HOST_LABEL, PRIMARY, ROLE_LABEL, KubeShadowSpec

GATEWAY_API = "gateway.networking.k8s.io/v1"
SLICE_TIMEOUT_S = 10.0
"""Longest wait for the EndpointSlice controller to publish a role change (it takes a few
milliseconds on an idle control plane)."""


class PodNotPlaced(InvalidRequestError):
    """A pod of the pair does not exist, is not scheduled, or has no address yet."""


def pod_path(spec: KubeShadowSpec, node: str) -> str:
    """URL path of ``node``'s pod."""
    return resource_path("v1", "pods", namespace=spec.namespace, name=spec.pod_of(node))


def placement(api: KubeApi, spec: KubeShadowSpec, node: str) -> HostPlacement:
    """Where ``node``'s pod runs: the agent that serves it (its cluster node's
    :data:`AGENT_HOST_LABEL`, else the pod's own sidecar, named after the pod) and its
    address.

    Raises:
        PodNotPlaced: the pod is missing, unscheduled or has no address yet.
    """
    pod = api.find(pod_path(spec, node))
    if pod is None:
        raise PodNotPlaced(f"pod {spec.namespace}/{spec.pod_of(node)} ({node}) does not exist")
    node_name = pod.get("spec", {}).get("nodeName")
    address = pod.get("status", {}).get("podIP")
    if not node_name or not address:
        raise PodNotPlaced(f"pod {spec.namespace}/{spec.pod_of(node)} ({node}) is not running "
                           "yet (no node or no address)")
    cluster_node = api.find(resource_path("v1", "nodes", name=node_name)) or {}
    labels = cluster_node.get("metadata", {}).get("labels", {})
    return HostPlacement(host=labels.get(AGENT_HOST_LABEL) or spec.pod_of(node),
                         address=address)


def set_role(api: KubeApi, spec: KubeShadowSpec, node: str, role: str) -> None:
    """Label ``node``'s pod with ``role`` (a merge patch of one label: absolute)."""
    api.merge_patch(pod_path(spec, node), {"metadata": {"labels": {ROLE_LABEL: role}}})


def roles(api: KubeApi, spec: KubeShadowSpec) -> dict[str, str]:
    """The role label of each node's pod (missing pods and labels left out)."""
    found: dict[str, str] = {}
    for node in (spec.primary_node, spec.shadow_node):
        pod = api.find(pod_path(spec, node))
        role = (pod or {}).get("metadata", {}).get("labels", {}).get(ROLE_LABEL)
        if role:
            found[node] = role
    return found


def published_addresses(api: KubeApi, spec: KubeShadowSpec) -> set[str]:
    """Addresses the ``<id>-rw`` Service's EndpointSlices publish as ready."""
    slices = api.get(resource_path("discovery.k8s.io/v1", "endpointslices",
                                   namespace=spec.namespace),
                     query={"labelSelector": f"kubernetes.io/service-name={spec.rw_service}"})
    addresses: set[str] = set()
    for item in slices.get("items", []):
        for endpoint in item.get("endpoints") or []:
            if endpoint.get("conditions", {}).get("ready", True):
                addresses.update(endpoint.get("addresses", []))
    return addresses


def wait_published(api: KubeApi, spec: KubeShadowSpec, expected: set[str]) -> None:
    """Wait until the Service publishes exactly ``expected``.

    Raises:
        InfraError: the controller did not publish it in time (retrying may succeed).
    """
    try:
        poll_until(lambda: published_addresses(api, spec) == expected,
                   timeout_s=SLICE_TIMEOUT_S, interval_s=0.01,
                   what=f"EndpointSlices of {spec.namespace}/{spec.rw_service} publishing "
                        f"{sorted(expected) or 'no address'}")
    except TimeoutError as err:
        raise InfraError(str(err)) from None


def route_path(spec: KubeShadowSpec) -> str:
    """URL path of the instance's TCPRoute."""
    return resource_path(GATEWAY_API, "tcproutes", namespace=spec.namespace,
                         name=spec.section.route)


def route_weights(api: KubeApi, spec: KubeShadowSpec) -> dict[str, int]:
    """Weight per node in the TCPRoute's first rule (nodes it does not name left out)."""
    return _weights_in(api.get(route_path(spec)), spec)


def _weights_in(route: KubeObject, spec: KubeShadowSpec) -> dict[str, int]:
    rules = route.get("spec", {}).get("rules") or [{}]
    by_service = {spec.node_service(n): n for n in (spec.primary_node, spec.shadow_node)}
    return {by_service[ref["name"]]: int(ref.get("weight", 1))
            for ref in rules[0].get("backendRefs") or [] if ref.get("name") in by_service}


def set_route_weights(api: KubeApi, spec: KubeShadowSpec, weights: Mapping[str, int]) -> None:
    """Set the first rule's ``backendRefs`` to the two node Services with their weights
    (nodes not in ``weights`` keep theirs), guarded by the route's resourceVersion.

    Raises:
        InfraError: someone else changed the route meanwhile (a retry rereads it).
    """
    route = api.get(route_path(spec))
    current = _weights_in(route, spec)
    merged = {n: current.get(n, 0) for n in (spec.primary_node, spec.shadow_node)}
    merged.update(weights)
    rules = list(route.get("spec", {}).get("rules") or [{}])
    rules[0] = {**rules[0], "backendRefs": [
        {"name": spec.node_service(node), "port": 5432, "weight": weight}
        for node, weight in merged.items()]}
    try:
        api.merge_patch(route_path(spec), {
            "metadata": {"resourceVersion": route["metadata"]["resourceVersion"]},
            "spec": {"rules": rules}})
    except KubeApiError as err:
        if err.status == 409:
            raise InfraError(f"TCPRoute {spec.section.route} changed while its weights were "
                             "set; retrying") from err
        raise


def serving_by_labels(api: KubeApi, spec: KubeShadowSpec) -> dict[str, int]:
    """100 for a pod labelled primary, 0 for the other (a node whose pod is gone or has no
    role is left out)."""
    return {node: 100 if role == PRIMARY else 0 for node, role in roles(api, spec).items()}


def pod_object(api: KubeApi, spec: KubeShadowSpec, node: str) -> KubeObject | None:
    """``node``'s pod, or ``None``."""
    return api.find(pod_path(spec, node))
