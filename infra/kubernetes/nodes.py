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
                       timeout_s: float = 60.0) -> KubeObject:
    """Create (or converge) node ``name`` with ``labels`` and wait until it is Ready and has no
    taint left, so pods can be scheduled onto it. Returns the node."""
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
    return poll_until(lambda: _schedulable(api.get(path)), timeout_s=timeout_s,
                      what=f"node {name} Ready and untainted")


def _schedulable(node: KubeObject) -> KubeObject | None:
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return node if ready and not node.get("spec", {}).get("taints") else None
