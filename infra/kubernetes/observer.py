"""How the fleet watcher reads protections on Kubernetes.

- locate: the pod whose address the ``<id>-rw`` Service's EndpointSlices publish (the
  cluster's own answer to "where does the traffic go").
- sample, liveness, standby readiness: as on hosts (the pod's agent serves its metrics, the
  control worker and HAProxy vote on liveness, the agent's lease is renewed), at the pods'
  addresses.
- scheduled events — the Kubernetes equivalent of EC2's: the serving pod's node cordoned
  (a drain is coming: the PodDisruptionBudget holds the eviction until a cutover moved the
  primary label), tainted ``NoExecute``, not Ready, or under memory, disk or PID pressure, and
  the pod itself marked for disruption (eviction or preemption accepted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from contracts.shadow import PlatformRequest
from infra.errors import InfraError
from infra.hosts.observer import HostsObserver
from infra.hosts.placement import HostsShadowSpec
from infra.kubernetes import roles
from infra.kubernetes.api import KubeApi, KubeObject, resource_path
from infra.kubernetes.placement import KubeShadowSpec
from infra.platform import Located, ScheduledEvent

log = logging.getLogger(__name__)

PLACEMENT_TTL_S = 10.0
"""How long a pod's place is reused before it is read again (liveness asks four times a
second; a pod keeps its node and address for its whole life)."""
PRESSURES = {"MemoryPressure": "memory", "DiskPressure": "disk", "PIDPressure": "process ids"}
SEVERITY_DRAIN = 1.0
SEVERITY_PRESSURE = 0.6


class KubernetesObserver(HostsObserver):
    """Protections whose pods run in one cluster."""

    name = "kubernetes"

    def __init__(self, state_dir: Path, api: Callable[[], KubeApi]) -> None:
        super().__init__(state_dir)
        self._make_api = api
        self._client: KubeApi | None = None
        self._placed: dict[str, tuple[float, HostsShadowSpec]] = {}
        self._requests: dict[str, PlatformRequest] = {}

    @property
    def _api(self) -> KubeApi:
        """The cluster's client, made at first use: every watcher builds an observer of every
        platform, and one without protections on Kubernetes needs no cluster at all.

        Raises:
            InvalidRequestError: the worker has no cluster configured.
        """
        if self._client is None:
            self._client = self._make_api()
        return self._client

    def locate(self, instances: Mapping[str, PlatformRequest]) -> dict[str, Located]:
        """The pod the rw Service publishes, per protection (none mid-shift).

        Raises:
            InfraError: the API server could not be asked.
        """
        self._requests = dict(instances)
        if instances:
            _ = self._api  # no cluster configured: said once per discovery, not per pod
        try:
            return super().locate(instances)
        except OSError as err:
            raise InfraError(f"the Kubernetes API server did not answer: {err}") from err

    def _serving(self, request: PlatformRequest) -> Located | None:
        kspec = KubeShadowSpec.from_request(request, self._state_dir)
        try:
            spec = self._spec(request)
            published = roles.published_addresses(self._api, kspec)
        except (InfraError, OSError) as err:
            log.debug("%s: no serving pod known (%s)", kspec.instance_id, err)
            return None
        serving = [n for n in (spec.primary_node, spec.shadow_node)
                   if spec.placement_of(n).address in published]
        if len(serving) != 1 or len(published) != 1:
            return None
        node = serving[0]
        return Located(spec.instance_id, node,
                       f"{spec.placement_of(node).address}:{spec.port_of(node)}")

    def _spec(self, request: PlatformRequest) -> HostsShadowSpec:
        key = request.spec.instance_id
        cached = self._placed.get(key)
        if cached is not None and time.monotonic() - cached[0] < PLACEMENT_TTL_S:
            return cached[1]
        kspec = KubeShadowSpec.from_request(request, self._state_dir)
        spec = kspec.hosts(roles.placement(self._api, kspec, kspec.primary_node),
                           roles.placement(self._api, kspec, kspec.shadow_node))
        self._placed[key] = (time.monotonic(), spec)
        return spec

    def scheduled_events(self, located: Mapping[str, Located]) -> dict[str, list[ScheduledEvent]]:
        """What the cluster says is coming for each serving pod and its node."""
        found: dict[str, list[ScheduledEvent]] = {}
        for instance_id, where in located.items():
            request = self._requests.get(instance_id)
            if request is None:
                continue
            kspec = KubeShadowSpec.from_request(request, self._state_dir)
            try:
                pod = roles.pod_object(self._api, kspec, where.node)
                node_name = (pod or {}).get("spec", {}).get("nodeName")
                node = self._api.find(resource_path("v1", "nodes", name=node_name)) \
                    if node_name else None
            except (InfraError, OSError) as err:
                raise InfraError(f"the Kubernetes API server did not answer: {err}") from err
            events = _pod_events(where, pod or {}) + _node_events(where, node or {})
            if events:
                found[instance_id] = events
        return found


def _node_events(where: Located, node: KubeObject) -> list[ScheduledEvent]:
    if not node:
        return []
    name, spec = node["metadata"]["name"], node.get("spec", {})
    prefix, pod = f"{where.identity}/{name}", f"{where.node}'s pod"
    events: list[ScheduledEvent] = []
    if spec.get("unschedulable"):
        events.append(ScheduledEvent(f"{prefix}/cordoned", "node-drain",
                                     f"node {name} of {pod} is cordoned: a drain would evict "
                                     "the primary once its budget allows", SEVERITY_DRAIN))
    for taint in spec.get("taints") or []:
        if taint.get("effect") == "NoExecute":
            events.append(ScheduledEvent(f"{prefix}/taint-{taint.get('key')}", "node-taint",
                                         f"node {name} of {pod} has the NoExecute taint "
                                         f"{taint.get('key')}", SEVERITY_DRAIN))
    for condition in node.get("status", {}).get("conditions", []):
        kind, status = condition.get("type"), condition.get("status")
        if kind == "Ready" and status != "True":
            events.append(ScheduledEvent(f"{prefix}/not-ready", "node-not-ready",
                                         f"node {name} of {pod} is not Ready "
                                         f"({condition.get('reason')})", SEVERITY_DRAIN))
        if kind in PRESSURES and status == "True":
            events.append(ScheduledEvent(f"{prefix}/{kind}", "node-pressure",
                                         f"node {name} of {pod} is short of "
                                         f"{PRESSURES[kind]} ({kind})", SEVERITY_PRESSURE))
    return events


def _pod_events(where: Located, pod: KubeObject) -> list[ScheduledEvent]:
    for condition in pod.get("status", {}).get("conditions", []):
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return [ScheduledEvent(f"{where.identity}/disruption", "pod-disruption",
                                   f"{where.node}'s pod is to be disrupted "
                                   f"({condition.get('reason')}: {condition.get('message')})",
                                   SEVERITY_DRAIN)]
    return []
