"""Fake nodes, for clusters whose kubelets are played by KWOK.

A Node object is all KWOK needs (it runs with ``--manage-all-nodes``): it marks the node Ready,
keeps its lease fresh and runs the pods the scheduler binds to it. The node lifecycle controller
then lifts its ``not-ready`` taint, after which the node takes pods like a real one.
"""

from __future__ import annotations

from collections.abc import Mapping

from infra.kubernetes.api import KubeApi, KubeObject, poll_until, resource_path

ZONE_LABEL = "topology.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def register_fake_node(api: KubeApi, name: str, *, labels: Mapping[str, str],
                       address: str | None = None, timeout_s: float = 60.0) -> KubeObject:
    """Create (or converge) node ``name`` with ``labels`` and wait until it is Ready and has no
    taint left, so pods can be scheduled onto it. Returns the node.

    With ``address``, that is the node's InternalIP, which KWOK gives the node's
    ``hostNetwork`` pods as their address (a namespace host playing the node's data plane)."""
    path = resource_path("v1", "nodes", name=name)
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {HOSTNAME_LABEL: name, **labels},
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
    }
    api.apply(path, node, field_manager="shadowshift")
    ready = poll_until(lambda: _schedulable(api.get(path)), timeout_s=timeout_s,
                       what=f"node {name} Ready and untainted")
    if address is None:
        return ready
    # After KWOK's initialize stage, which writes the addresses it computed from the node as
    # it first saw it (a patch before it would be overwritten); the later stages keep them.
    addresses = [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}]
    api.merge_patch(resource_path("v1", "nodes", name=name, subresource="status"),
                    {"status": {"addresses": addresses}})
    return poll_until(lambda: _has_address(api.get(path), address), timeout_s=timeout_s,
                      what=f"node {name} at {address}")


def _has_address(node: KubeObject, address: str) -> KubeObject | None:
    found = node.get("status", {}).get("addresses") or []
    return node if {"type": "InternalIP", "address": address} in found else None


def _schedulable(node: KubeObject) -> KubeObject | None:
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return node if ready and not node.get("spec", {}).get("taints") else None
