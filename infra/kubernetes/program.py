"""The inline Pulumi program of one instance on Kubernetes (pulumi-kubernetes).

The cluster side:

1. the shadow's **PersistentVolumeClaim** of the spec's storage class;
2. the shadow as a **bare Pod**, CloudNativePG's choice: a StatefulSet's controller would
   recreate a deleted pod on its own, and a new pod after a node loss is a new, empty standby
   that only ShadowShift's provisioning may seed, never a controller behind its back. It runs
   PostgreSQL and the agent as a sidecar (``shadowshift agent --host $(POD_NAME)``), and a
   *required* anti-affinity keeps it off the node and out of the zone of any pod of the
   instance (the primary);
3. a **PodDisruptionBudget** of one on the pod labelled primary, so a drain cannot evict the
   primary before a cutover has moved the label (then the former primary is a replica and
   goes);
4. the **``<id>-rw`` Service** selecting the instance's pod labelled primary (kept when the
   shadow is destroyed: it is how clients reach the instance), and with a TCPRoute, a Service
   per node for the route's weighted ``backendRefs``.

Role labels and route weights are not here: they change at every cutover through the API
(:mod:`infra.kubernetes.roles`), as HAProxy weights do through its runtime API, and a stack
update never resets them. The hosts platform's program (router entries, slot, tier settings)
runs in the same stack once the shadow's pod has a place (``hosts_part``).

Every object is created with ``pulumi.com/skipAwait``: the platform waits for the scheduler
itself, with a bound and the scheduler's reason when it cannot place the pod, and for the
EndpointSlices at each cutover (the provider's own Service await reads the legacy Endpoints
API, which the worker's role does not grant).
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_kubernetes as k8s

from contracts.spec_kubernetes import node_selector
from infra.kubernetes.nodes import HOSTNAME_LABEL, ZONE_LABEL
from infra.kubernetes.placement import (
    INSTANCE_LABEL,
    NODE_LABEL,
    PG_PORT_NAME,
    PRIMARY,
    ROLE_LABEL,
    SERVICE_PORT,
    KubeShadowSpec,
)

SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


def kubernetes_program(spec: KubeShadowSpec, kubeconfig: str,
                       hosts_part: Callable[[], None] | None = None) -> Callable[[], None]:
    """The program of ``spec``'s stack on the cluster of ``kubeconfig`` (its text), with the
    hosts platform's part when the shadow's place is known."""

    def program() -> None:
        provider = k8s.Provider("cluster", kubeconfig=kubeconfig,
                                enable_server_side_apply=True)
        opts = pulumi.ResourceOptions(provider=provider)
        ns, instance = spec.namespace, {INSTANCE_LABEL: spec.instance_id}
        claim = k8s.core.v1.PersistentVolumeClaim("shadow-data", metadata={
            "name": spec.claim_name, "namespace": ns, "labels": instance,
            "annotations": SKIP_AWAIT,
        }, spec={
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": spec.section.storage_class,
            "resources": {"requests": {"storage": spec.section.storage_size}},
        }, opts=opts)
        pod = k8s.core.v1.Pod("shadow-pod", metadata={
            "name": spec.shadow_node, "namespace": ns, "annotations": SKIP_AWAIT,
            "labels": {**instance, NODE_LABEL: spec.shadow_node},
        }, spec=_shadow_pod_spec(spec), opts=pulumi.ResourceOptions(
            provider=provider, depends_on=[claim]))
        k8s.policy.v1.PodDisruptionBudget("primary-budget", metadata={
            "name": spec.budget_name, "namespace": ns, "labels": instance,
        }, spec={"minAvailable": 1, "selector": {"matchLabels": {**instance,
                                                                 ROLE_LABEL: PRIMARY}}},
            opts=opts)
        k8s.core.v1.Service("rw-service", metadata={
            "name": spec.rw_service, "namespace": ns, "labels": instance,
            "annotations": SKIP_AWAIT,
        }, spec=_service_spec({**instance, ROLE_LABEL: PRIMARY}),
            opts=pulumi.ResourceOptions(provider=provider, retain_on_delete=True))
        if spec.section.route:
            for node in (spec.primary_node, spec.shadow_node):
                k8s.core.v1.Service(f"node-service-{node}", metadata={
                    "name": spec.node_service(node), "namespace": ns, "labels": instance,
                    "annotations": SKIP_AWAIT,
                }, spec=_service_spec({**instance, NODE_LABEL: node}), opts=opts)
        if hosts_part is not None:
            hosts_part()
        pulumi.export("shadow_pod", pod.metadata.apply(lambda m: m["name"]))
        pulumi.export("rw_service", spec.rw_service)

    return program


def _service_spec(selector: dict[str, str]) -> dict[str, object]:
    return {"selector": selector, "ports": [{"name": PG_PORT_NAME, "port": SERVICE_PORT,
                                             "targetPort": PG_PORT_NAME}]}


def _shadow_pod_spec(spec: KubeShadowSpec) -> dict[str, object]:
    section = spec.section
    away = {"labelSelector": {"matchLabels": {INSTANCE_LABEL: spec.instance_id}}}
    return {
        "hostNetwork": section.host_network,
        "nodeSelector": node_selector(section),
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {**away, "topologyKey": HOSTNAME_LABEL},
            {**away, "topologyKey": ZONE_LABEL},
        ]}},
        "containers": [
            {"name": "postgres", "image": section.image,
             "ports": [{"name": PG_PORT_NAME, "containerPort": spec.shadow_port}],
             "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]},
            {"name": "agent", "image": section.agent_image,
             "args": ["agent", "--host", "$(POD_NAME)"],
             "env": [{"name": "POD_NAME",
                      "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
             "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]},
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": spec.claim_name}}],
        "terminationGracePeriodSeconds": 30,
    }
