"""The kubernetes platform: the shadow is a pod the scheduler places away from the primary's
node and zone, and traffic moves the Kubernetes way.

What is Kubernetes here, and what is the hosts platform underneath:

- **Kubernetes** (``infra/kubernetes``): the shadow's Pod, claim, the primary's
  PodDisruptionBudget and the instance's Services, made by a pulumi-kubernetes program; the
  role labels the ``<id>-rw`` Service selects on and a TCPRoute's weights, changed at every
  cutover and waited for until the EndpointSlice controller publishes them; where each pod
  runs (the scheduler's choice, read back from the API).
- **The data plane** (the inherited :class:`~infra.hosts.platform.HostsPlatform`): each pod's
  PostgreSQL is reached at the pod's address, its agent does the host-local work (copy,
  rewind, destroy, probe), the control worker does the SQL. Client traffic from outside the
  cluster goes through this worker's HAProxy, which follows the published EndpointSlices (it
  plays kube-proxy's part: there is none on this machine, ``docs/kubernetes.md``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from contracts.agent_tasks import AgentCall, AgentTask, ServerRef
from contracts.shadow import Capabilities, NodeFacts
from contracts.version import VERSION
from infra.errors import InfraError, InvalidRequestError
from infra.hosts.placement import HostsShadowSpec
from infra.hosts.platform import HostsPlatform, check_primary
from infra.hosts.program import hosts_program
from infra.kubernetes import roles
from infra.kubernetes.api import KubeApi, KubeObject, resource_path
from infra.kubernetes.placement import (
    FENCED,
    INSTANCE_LABEL,
    NODE_LABEL,
    PRIMARY,
    REPLICA,
    ROLE_LABEL,
    KubeShadowSpec,
)
from infra.kubernetes.preflight import preflight
from infra.kubernetes.program import kubernetes_program
from infra.local import fencing
from infra.local.haproxy import HAProxyManager
from infra.local.postgres import PgEndpoint
from infra.platform import ProgressCallback, ShadowInfo
from infra.pulumi_engine import StackDriver

log = logging.getLogger(__name__)

PLACE_TIMEOUT_S = 60.0
"""How long provisioning waits for the scheduler to place the shadow's pod and for it to run
(longer means the cluster cannot place it: the pod's events say why)."""


class KubernetesPlatform(HostsPlatform):
    """One protected PostgreSQL as two pods."""

    name = "kubernetes"
    capabilities = Capabilities(rejoin=True, unprotect_when_degraded=True, sync_relax=True,
                                agents=True, fence_lease_s=HostsPlatform.capabilities
                                .fence_lease_s)

    def __init__(self, spec: KubeShadowSpec, api: KubeApi, kubeconfig: str,
                 driver: StackDriver | None) -> None:
        self.kspec = spec
        self.api = api
        self._kubeconfig = kubeconfig
        self._stack_driver = driver
        self._hosts_spec: HostsShadowSpec | None = None
        self.haproxy = HAProxyManager(spec.state_dir / "haproxy")
        self.sessions = fencing.NodeSessions()

    @property
    def spec(self) -> HostsShadowSpec:
        """The data plane's view: where both pods run, read from the API once.

        Raises:
            InvalidRequestError: a pod is missing or not running yet.
        """
        if self._hosts_spec is None:
            kspec = self.kspec
            self._hosts_spec = kspec.hosts(roles.placement(self.api, kspec, kspec.primary_node),
                                           roles.placement(self.api, kspec, kspec.shadow_node))
        return self._hosts_spec

    @spec.setter
    def spec(self, value: HostsShadowSpec) -> None:
        self._hosts_spec = value

    # -- shadow lifecycle ------------------------------------------------------------------

    def provision_shadow(self, on_progress: ProgressCallback | None = None) -> ShadowInfo:
        """Until the shadow's pod runs: check the cluster and the primary, label the primary
        pod, create the cluster objects and wait for the scheduler. Then as on hosts: the
        pod's agent copies the standby while the next call's ``up`` adds the router entry,
        the slot and the tier's settings to the same stack."""
        kspec = self.kspec
        preflight(self.api, kspec)
        if roles.pod_object(self.api, kspec, kspec.shadow_node) is None:
            primary = roles.placement(self.api, kspec, kspec.current_primary)
            check_primary(PgEndpoint(host=primary.address, port=kspec.port_of(
                kspec.current_primary)), f"primary pod {kspec.section.primary_pod}",
                kspec.replication_user)
        self._label_pods()
        self.driver.up(kspec.stack_name, kubernetes_program(kspec, self._kubeconfig),
                       on_progress=on_progress)
        self._await_placed()
        self._label_pods()
        return super().provision_shadow(on_progress)

    def _label_pods(self) -> None:
        """Both pods carry the instance and node labels; a pod without a role gets the one
        of the request's roles (labels already there are the cutovers' to change)."""
        kspec = self.kspec
        for node in (kspec.primary_node, kspec.shadow_node):
            pod = roles.pod_object(self.api, kspec, node)
            if pod is None:
                continue
            labels = {INSTANCE_LABEL: kspec.instance_id, NODE_LABEL: node}
            if ROLE_LABEL not in pod["metadata"].get("labels", {}):
                labels[ROLE_LABEL] = PRIMARY if node == kspec.current_primary else REPLICA
            self.api.merge_patch(roles.pod_path(kspec, node), {"metadata": {"labels": labels}})

    def _await_placed(self) -> None:
        """Wait until the shadow's pod runs with an address.

        Raises:
            InvalidRequestError: it was not placed in :data:`PLACE_TIMEOUT_S` (the cluster
                objects are destroyed again, so nothing is left half-created), with the
                scheduler's reason.
        """
        kspec = self.kspec
        deadline = time.monotonic() + PLACE_TIMEOUT_S
        while True:
            pod = roles.pod_object(self.api, kspec, kspec.shadow_node) or {}
            if pod.get("status", {}).get("podIP") and pod.get("spec", {}).get("nodeName"):
                return
            if time.monotonic() > deadline:
                reason = _unscheduled_reason(pod)
                self.driver.destroy(kspec.stack_name, kubernetes_program(kspec, self._kubeconfig))
                raise InvalidRequestError(
                    f"the shadow's pod {kspec.namespace}/{kspec.shadow_node} was not placed in "
                    f"{PLACE_TIMEOUT_S:.0f} s ({reason}); nothing was kept")
            time.sleep(0.2)

    def _program(self, *, standby_streams: bool,
                 wait_for_stream: bool = False) -> Callable[[], None]:
        """The cluster objects and the hosts platform's part, in one stack."""
        return kubernetes_program(self.kspec, self._kubeconfig, hosts_program(
            self.spec, standby_streams=standby_streams, wait_for_stream=wait_for_stream))

    def destroy_shadow(self, on_progress: ProgressCallback | None = None) -> bool:
        """Destroy the stack: the shadow's pod and claim (kept when that pod serves: the
        stack's last ``up`` marked them so), the budget, the route's Services, the router
        entry and slot. The ``<id>-rw`` Service stays, selecting the primary."""
        try:
            return super().destroy_shadow(on_progress)
        except roles.PodNotPlaced:  # a pod is gone: the stack's state still knows the rest
            return self.driver.destroy(self.kspec.stack_name,
                                       kubernetes_program(self.kspec, self._kubeconfig))

    def inspect_node(self, node: str) -> NodeFacts:
        """Asked of the agent of ``node``'s pod (its data lives there); the other pod need
        not exist (preflight inspects the primary before the shadow is created). A pod that
        is not running is reported, not raised."""
        kspec = self.kspec
        try:
            place = roles.placement(self.api, kspec, node)
        except roles.PodNotPlaced as err:
            return NodeFacts(node, False, "", False, advice=str(err))
        call = AgentCall(VERSION, ServerRef(kspec.instance_id, node, kspec.port_of(node)))
        return NodeFacts(node, False, "", None, agent_task=AgentTask(place.host, inspect=call))

    def nodes(self) -> tuple[str, str]:
        """``(original primary, shadow)``: named by the spec, whether or not the pods run."""
        return self.kspec.primary_node, self.kspec.shadow_node

    # -- traffic, the Kubernetes way -------------------------------------------------------

    def get_weights(self) -> dict[str, int]:
        """The TCPRoute's weights when the instance has one, else 100 for the pod labelled
        primary and 0 for the other."""
        if self.kspec.section.route:
            return roles.route_weights(self.api, self.kspec)
        return roles.serving_by_labels(self.api, self.kspec)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Label each pod (primary for a positive weight), set the route's weights, wait until
        the EndpointSlices publish the primary's address, then make HAProxy follow.

        Raises:
            InvalidRequestError: a weight outside 0..100, or between them without a route (a
                Service sends a pod all of its traffic or none).
        """
        for node, weight in weights.items():
            if not 0 <= weight <= 100:
                raise InvalidRequestError(f"weight {weight} for {node} is outside 0..100")
            if 0 < weight < 100 and not self.kspec.section.route:
                raise InvalidRequestError(
                    f"weight {weight} for {node}: without a TCPRoute (kubernetes.route) the "
                    "instance's Service routes all of its traffic to a pod or none")
        kspec = self.kspec
        for node, weight in weights.items():  # in the caller's order: lower before raise
            roles.set_role(self.api, kspec, node, PRIMARY if weight > 0 else REPLICA)
        if kspec.section.route:
            roles.set_route_weights(self.api, kspec, weights)
        self._await_published()
        super().set_weights(weights)

    def _await_published(self) -> None:
        labelled = roles.roles(self.api, self.kspec)
        spec = self.spec
        roles.wait_published(self.api, self.kspec, {
            spec.placement_of(node).address for node, role in labelled.items()
            if role == PRIMARY})

    def fence(self, node: str) -> None:
        """Read-only and out of HAProxy (as on hosts), then out of the Service: labelled
        fenced. The label is not waited for: the node refuses writes already."""
        super().fence(node)
        roles.set_role(self.api, self.kspec, node, FENCED)

    def fence_router(self, node: str) -> None:
        """Out of HAProxy first (needs nothing from the node or the API server), then
        labelled fenced and weight 0 on the route. An API server that cannot be reached does
        not stop an emergency here: the node is out of the router already, and the shift
        later waits for the EndpointSlices (and retries until it can)."""
        super().fence_router(node)
        try:
            roles.set_role(self.api, self.kspec, node, FENCED)
            if self.kspec.section.route:
                roles.set_route_weights(self.api, self.kspec, {node: 0})
        except (InfraError, OSError) as err:
            log.warning("%s is out of the router; labelling it fenced failed (%s)", node, err)

    def routes_service(self) -> bool:
        """The ``<id>-rw`` Service exists and HAProxy has the instance's service."""
        service = resource_path("v1", "services", namespace=self.kspec.namespace,
                                name=self.kspec.rw_service)
        try:
            exists = self.api.find(service) is not None
        except (InfraError, OSError):
            return False
        return exists and super().routes_service()


def _unscheduled_reason(pod: KubeObject) -> str:
    for condition in pod.get("status", {}).get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason"))
    return "the pod does not exist" if not pod else "it has no node or address yet"
