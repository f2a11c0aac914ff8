"""Refuse, before anything is created, what no retry can fix on Kubernetes: a namespace, pod,
storage class or route that does not exist, a primary pod that does not run or does not name
its PostgreSQL port, and a cluster with no node the shadow's anti-affinity allows."""

from __future__ import annotations

from contracts.spec_kubernetes import node_selector
from infra.errors import InvalidRequestError
from infra.kubernetes.api import KubeApi, KubeObject, resource_path
from infra.kubernetes.nodes import HOSTNAME_LABEL, ZONE_LABEL
from infra.kubernetes.placement import PG_PORT_NAME, KubeShadowSpec
from infra.kubernetes.roles import pod_path, route_path

TAINTS_THAT_REPEL = ("NoSchedule", "NoExecute")


def preflight(api: KubeApi, spec: KubeShadowSpec) -> None:
    """Check the cluster can take ``spec``'s shadow.

    Raises:
        InvalidRequestError: naming the field of the spec (``kubernetes.<field>``) or the
            cluster's state to change.
    """
    ns = spec.namespace
    if api.find(resource_path("v1", "namespaces", name=ns)) is None:
        raise InvalidRequestError(f"kubernetes.namespace {ns!r} does not exist in the cluster")
    pod = api.find(pod_path(spec, spec.primary_node))
    if pod is None:
        raise InvalidRequestError(f"kubernetes.primary_pod {spec.section.primary_pod!r} does "
                                  f"not exist in namespace {ns}")
    if pod.get("status", {}).get("phase") != "Running" or not pod["spec"].get("nodeName"):
        raise InvalidRequestError(f"kubernetes.primary_pod {spec.section.primary_pod!r} is not "
                                  f"running (phase {pod.get('status', {}).get('phase')})")
    if not _names_port(pod):
        raise InvalidRequestError(
            f"kubernetes.primary_pod {spec.section.primary_pod!r} has no container port named "
            f"{PG_PORT_NAME!r}; name its PostgreSQL port so the instance's Services can "
            "target both pods")
    storage = resource_path("storage.k8s.io/v1", "storageclasses",
                            name=spec.section.storage_class)
    if api.find(storage) is None:
        known = [c["metadata"]["name"] for c in api.get(
            resource_path("storage.k8s.io/v1", "storageclasses")).get("items", [])]
        raise InvalidRequestError(
            f"kubernetes.storage_class {spec.section.storage_class!r} does not exist; the "
            f"cluster has {', '.join(sorted(known)) or 'none'}")
    if spec.section.route and api.find(route_path(spec)) is None:
        raise InvalidRequestError(f"kubernetes.route {spec.section.route!r}: no TCPRoute of "
                                  f"that name in namespace {ns}")
    if api.find(pod_path(spec, spec.shadow_node)) is None:
        _a_node_is_allowed(api, pod["spec"]["nodeName"], node_selector(spec.section))


def _names_port(pod: KubeObject) -> bool:
    return any(port.get("name") == PG_PORT_NAME
               for container in pod["spec"].get("containers", [])
               for port in container.get("ports") or [])


def _a_node_is_allowed(api: KubeApi, primary_node: str, selector: dict[str, str]) -> None:
    """Some Ready, schedulable, untainted node with the ``selector`` labels is another node
    in another zone than the primary's (the shadow pod's required anti-affinity).

    Raises:
        InvalidRequestError: none is, with what the cluster has.
    """
    nodes = api.get(resource_path("v1", "nodes")).get("items", [])
    primary = next((n for n in nodes if n["metadata"]["name"] == primary_node), None)
    labels = (primary or {}).get("metadata", {}).get("labels", {})
    zone = labels.get(ZONE_LABEL)
    hostname = labels.get(HOSTNAME_LABEL, primary_node)
    for node in nodes:
        theirs = node["metadata"].get("labels", {})
        if theirs.get(HOSTNAME_LABEL, node["metadata"]["name"]) == hostname:
            continue
        if zone is not None and theirs.get(ZONE_LABEL) == zone:
            continue
        if any(theirs.get(key) != value for key, value in selector.items()):
            continue
        if _takes_pods(node):
            return
    raise InvalidRequestError(
        f"no node can take the shadow: its required anti-affinity puts it on another node in "
        f"another zone than the primary's (node {primary_node}, zone {zone or 'unlabelled'}), "
        f"and the cluster has {len(nodes)} node(s), none of them Ready, schedulable"
        f"{', labelled ' + ','.join(f'{k}={v}' for k, v in selector.items()) if selector else ''}"
        " and elsewhere; add a node in another zone")


def _takes_pods(node: KubeObject) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    repelled = any(t.get("effect") in TAINTS_THAT_REPEL for t in node["spec"].get("taints", []))
    return ready and not node["spec"].get("unschedulable") and not repelled
