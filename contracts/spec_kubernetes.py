"""The ``kubernetes`` section of a protection spec: which pod is the primary, where the shadow
pod goes and how its traffic is published.

The primary is a pod the operator already runs; ShadowShift creates the shadow as a pod of its
own in the same namespace (``infra/kubernetes``), kept off the primary's node and zone by a
required anti-affinity, and moves the traffic by the ``role`` label its ``<id>-rw`` Service
selects on (and, with :attr:`KubernetesSection.route`, the weights of a Gateway API TCPRoute).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
"""RFC 1123 label: namespaces, Services."""
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\Z")
"""RFC 1123 subdomain: pods, storage classes, routes."""
QUANTITY = re.compile(r"^[1-9][0-9]{0,8}(Ki|Mi|Gi|Ti)\Z")
"""A storage size as Kubernetes writes it (binary suffixes only: ``10Gi``)."""
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}\Z")
"""A container image reference (registry/name:tag or @digest)."""
LABEL_KEY = re.compile(r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}"
                       r"[A-Za-z0-9])?\Z")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?\Z")


class KubernetesSectionError(ValueError):
    """The section is invalid; the message starts with the field it names (without
    ``kubernetes.``)."""


@dataclass
class KubernetesSection:
    """Where the instance runs in the cluster."""

    namespace: str
    """Namespace of the primary pod; the shadow and its objects are created there."""
    primary_pod: str
    """The running primary's pod (it must expose its PostgreSQL port under the name
    ``postgres``)."""
    storage_class: str
    """StorageClass of the shadow's PersistentVolumeClaim."""
    storage_size: str = "10Gi"
    """Size of that claim."""
    image: str = "postgres:17"
    """Image of the shadow's PostgreSQL container."""
    agent_image: str = "shadowshift/agent:0.1"
    """Image of the shadow's agent sidecar (``shadowshift agent --host $(POD_NAME)``)."""
    route: str = ""
    """A TCPRoute (Gateway API) in the namespace whose first rule's ``backendRefs`` weights
    ShadowShift sets (0/100, absolutely); empty: the instance is reached through its Service
    only."""
    node_selector: str = ""
    """Labels a node must have to take the shadow, as ``key=value[,key=value]`` (a database
    node pool); empty: any node the anti-affinity allows."""
    host_network: bool = False
    """Pods use their node's network, so a pod's address is its node's (the development
    cluster's nodes are namespace hosts, ``docs/kubernetes.md``)."""
    fleet_index: int | None = None
    """Development clusters whose nodes are namespace hosts (``infra/hosts``): the fleet's
    index, which lets the control worker isolate a lost primary's host. ``None`` elsewhere."""


def validate_kubernetes_section(section: KubernetesSection) -> None:
    """Raise :class:`KubernetesSectionError` naming the first wrong field."""
    names = (("namespace", DNS_LABEL, 63), ("primary_pod", DNS_SUBDOMAIN, 253),
             ("storage_class", DNS_SUBDOMAIN, 253))
    for name, pattern, longest in names:
        _name(name, getattr(section, name), pattern, longest)
    if section.route:
        _name("route", section.route, DNS_SUBDOMAIN, 253)
    if not isinstance(section.storage_size, str) or not QUANTITY.match(section.storage_size):
        raise KubernetesSectionError(
            f"storage_size {section.storage_size!r}: use a size such as 10Gi (Ki, Mi, Gi, Ti)")
    for name in ("image", "agent_image"):
        value = getattr(section, name)
        if not isinstance(value, str) or not IMAGE.match(value):
            raise KubernetesSectionError(f"{name} {value!r}: not a container image reference")
    node_selector(section)
    if not isinstance(section.host_network, bool):
        raise KubernetesSectionError(f"host_network {section.host_network!r}: use true or false")
    index = section.fleet_index
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                              or not 0 <= index <= 255):
        raise KubernetesSectionError(f"fleet_index {index!r} is outside 0..255")


def _name(field: str, value: object, pattern: re.Pattern[str], longest: int) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise KubernetesSectionError(
            f"{field} {value!r}: use at most {longest} characters of a-z, 0-9 and '-'"
            f"{', ' + chr(39) + '.' + chr(39) if longest > 63 else ''}, starting and ending "
            "with a letter or digit (a Kubernetes name)")


def node_selector(section: KubernetesSection) -> dict[str, str]:
    """The section's ``node_selector`` as labels.

    Raises:
        KubernetesSectionError: a pair that is not ``key=value`` with Kubernetes label syntax.
    """
    raw = section.node_selector
    if not isinstance(raw, str):
        raise KubernetesSectionError(f"node_selector {raw!r}: use key=value[,key=value]")
    labels: dict[str, str] = {}
    for pair in filter(None, raw.split(",")):
        key, separator, value = pair.strip().partition("=")
        if not separator or not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
            raise KubernetesSectionError(f"node_selector {pair!r}: use key=value with label "
                                         "syntax (pool=databases)")
        labels[key] = value
    return labels
