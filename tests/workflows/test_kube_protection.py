"""Protections on the kubernetes platform, end to end on the session's real control plane:
the shadow pod is created and placed by the scheduler on the other node, its host's agent
copies it; then either the fleet watcher sees the primary's node cordoned (a drain has begun)
and the protection cuts over before the drain can evict the primary (the PodDisruptionBudget
holds it until the primary label has moved), or the failure model predicts a degradation
replayed into the primary pod's metrics and the protection cuts over before the failure
point. The former primary rejoins as the shadow. Writes go through the router all along; the
split-brain monitor watches both servers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.policy import Policy
from contracts.protection import PREDICTION
from contracts.shadow import PlatformRequest
from contracts.watch import WatchFleetInput
from infra.kubernetes.api import KubeApi, KubeApiError, resource_path
from infra.kubernetes.placement import KubeShadowSpec
from infra.kubernetes.roles import published_addresses
from infra.local.haproxy import HAProxyManager
from infra.local.metric_overlay import write_overlay
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint
from tests.conftest import acked_after
from tests.kube_world import KubeWorld
from tests.platforms.hosts_pair import hosts_world
from tests.platforms.kube_pair import KubeNodes, kube_nodes
from workers.demo_trace import build_trace
from workers.demo_worker import overlay_platforms
from workers.kube_lab import grant_worker, local_volumes, primary_pod
from workers.protect import ensure_fleet_watcher, start_protection, status_when
from workers.registry import build_activities, new_worker
from workers.settings import Settings
from workers.split_brain import SplitBrainMonitor
from workers.workload import Writer, missing_acked, prepare_table

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nodes(temporal_env: WorkflowEnvironment, kube_world: KubeWorld) -> Iterator[KubeNodes]:
    """Two namespace hosts with their agents, each the data plane of a node of the cluster."""
    with hosts_world(temporal_env.client.service_client.config.target_host) as world, \
            kube_nodes(kube_world, world) as made:
        yield made


def _evict(api: KubeApi, namespace: str, pod: str) -> int:
    """Ask the Eviction API to evict ``pod`` (a dry run: the budget is judged, nothing is
    deleted); the HTTP status, 201 allowed, 429 refused by a PodDisruptionBudget."""
    path = resource_path("v1", "pods", namespace=namespace, name=pod, subresource="eviction")
    try:
        api.request("POST", path, {"apiVersion": "policy/v1", "kind": "Eviction",
                                   "metadata": {"name": pod, "namespace": namespace}},
                    query={"dryRun": "All"})
    except KubeApiError as err:
        return err.status
    return 201


async def test_a_drained_node_moves_the_primary_before_its_eviction_and_it_rejoins(
    nodes: KubeNodes, namespace: str, settings: Settings, temporal_env: WorkflowEnvironment,
    task_queue: str,
) -> None:
    """Tier 1 on two pods: cordoning the primary's node is reported by the watcher, the
    protection cuts over (no acknowledged write lost, never two writable primaries), the
    ``<id>-rw`` Service's EndpointSlice follows the label, the budget that refused the
    primary's eviction allows it once it is a replica, and the former primary is rewound
    into the new shadow by its own host's agent."""
    client, world, api = temporal_env.client, nodes.hosts, nodes.api
    first, second = world.hosts
    instance_id, port = f"kdb-{uuid.uuid4().hex[:5]}", world.next_port()
    pod = f"pg-{instance_id}"
    router_port = free_ports(1)[0]
    spec = nodes.spec(namespace, instance_id, pod, port, router_port)
    spec = dataclasses.replace(spec, policy=Policy(threshold=45, cooldown_s=0))
    grant_worker(api, namespace)  # the worker is bound to docs/kubernetes/rbac.yaml only
    settings = dataclasses.replace(settings, kubeconfig=nodes.worker_kubeconfig)
    addresses = {host: str(world.lab.hosts[host].address) for host in world.hosts}
    endpoints = {instance_id: PgEndpoint(host=addresses[first], port=port),
                 f"{instance_id}-shadow": PgEndpoint(host=addresses[second], port=port)}
    node_path = resource_path("v1", "nodes", name=nodes.node_of[first])
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=300,
                            events_interval_s=1.0)
    with local_volumes(api, nodes.node_of, instance_id):
        await asyncio.to_thread(world.ensure_primary, instance_id, port)
        await asyncio.to_thread(primary_pod, api, namespace, pod, nodes.node_of[first], port)
        with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
            async with new_worker(client, settings, pool, task_queue=task_queue):
                handle = await start_protection(client, spec, task_queue=task_queue)
                await status_when(handle, lambda s: s.phase == "protected", 240)
                assert _evict(api, namespace, pod) == 429  # the budget holds the primary
                router = PgEndpoint(port=router_port)
                prepare_table(router)
                haproxy = HAProxyManager(settings.state_dir / "haproxy")
                with SplitBrainMonitor(endpoints, haproxy, instance_id) as monitor, \
                        Writer(router, rate=50) as writer:
                    await acked_after(writer)
                    watcher = await ensure_fleet_watcher(client, task_queue=task_queue,
                                                         request=watch)
                    api.merge_patch(node_path, {"spec": {"unschedulable": True}})  # drain
                    status = await status_when(handle, lambda s: s.cutovers == 1 and s.recoveries
                                           and s.phase == "protected", 240)
                    await acked_after(writer, since=time.monotonic())
                report = monitor.stop()
                await watcher.terminate("test over")
                await handle.terminate("test over")
        api.merge_patch(node_path, {"spec": {"unschedulable": False}})
        served = published_addresses(api, KubeShadowSpec.from_request(
            PlatformRequest(spec), settings.state_dir))
        assert _evict(api, namespace, pod) == 201  # a replica now: the drain may evict it
    assert status.primary_node == f"{instance_id}-shadow", status
    assert status.recoveries == ["rejoined"], status
    assert any("node-drain" in line for line in status.log), status.log
    assert served == {addresses[second]}
    assert report.split_brain_observations == 0, report.events
    assert missing_acked(endpoints[f"{instance_id}-shadow"], writer.stats.acked_ids) == []
    with endpoints[f"{instance_id}-shadow"].connect() as conn:
        row = conn.execute("SELECT application_name, sync_state FROM pg_stat_replication"
                           ).fetchone()
    assert row == (instance_id, "sync"), row
    HAProxyManager(settings.state_dir / "haproxy").stop()



async def test_a_predicted_degradation_moves_the_primary_pod_and_it_rejoins(
    nodes: KubeNodes, namespace: str, settings: Settings, temporal_env: WorkflowEnvironment,
    task_queue: str, tmp_path: Path,
) -> None:
    """The demo's synthetic disk degradation replayed into the primary pod's live metrics
    (the demo worker's overlay; the pod's agent's real readings underneath): the model's risk
    crosses the threshold before the trace's failure point, the protection cuts over on its
    prediction, 0 acknowledged writes lost, never two writable primaries, and the former
    primary rejoins."""
    client, world, api = temporal_env.client, nodes.hosts, nodes.api
    first, second = world.hosts
    instance_id, port = f"kpr-{uuid.uuid4().hex[:5]}", world.next_port()
    pod = f"pg-{instance_id}"
    spec = dataclasses.replace(nodes.spec(namespace, instance_id, pod, port, free_ports(1)[0]),
                               policy=Policy(threshold=60, consecutive_readings=3))
    grant_worker(api, namespace)
    settings = dataclasses.replace(settings, kubeconfig=nodes.worker_kubeconfig)
    addresses = {host: str(world.lab.hosts[host].address) for host in world.hosts}
    endpoints = {instance_id: PgEndpoint(host=addresses[first], port=port),
                 f"{instance_id}-shadow": PgEndpoint(host=addresses[second], port=port)}
    trace = build_trace(tmp_path, healthy_hours=4, kind="synthetic")
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=300)
    served = overlay_platforms(settings)
    with local_volumes(api, nodes.node_of, instance_id):
        await asyncio.to_thread(world.ensure_primary, instance_id, port)
        await asyncio.to_thread(primary_pod, api, namespace, pod, nodes.node_of[first], port)
        with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
            async with new_worker(client, settings, pool, task_queue=task_queue,
                                  activities=build_activities(settings, client, served=served)):
                handle = await start_protection(client, spec, task_queue=task_queue)
                await status_when(handle, lambda s: s.phase == "protected", 240)
                router = PgEndpoint(port=spec.router_port)
                prepare_table(router)
                haproxy = HAProxyManager(settings.state_dir / "haproxy")
                with SplitBrainMonitor(endpoints, haproxy, instance_id) as monitor, \
                        Writer(router, rate=50) as writer:
                    await acked_after(writer)
                    wall_start = time.time()
                    write_overlay(settings.state_dir, f"{addresses[first]}:{port}",
                                  trace.csv_path, dict(trace.columns), speedup=300.0,
                                  wall_start=wall_start, exclusive=trace.exclusive)
                    watcher = await ensure_fleet_watcher(client, task_queue=task_queue,
                                                         request=watch)
                    status = await status_when(handle, lambda s: s.cutovers == 1 and s.recoveries
                                           and s.phase == "protected", 240)
                    await acked_after(writer, since=time.monotonic())
                report = monitor.stop()
                await watcher.terminate("test over")
                await handle.terminate("test over")
    failure_wall = trace.wall_time(trace.failure_at, wall_start, 300.0)
    assert status.last_cutover is not None and status.last_cutover.trigger == PREDICTION, status
    assert status.last_cutover.at < failure_wall, (status.last_cutover, failure_wall)
    assert status.primary_node == f"{instance_id}-shadow" and status.recoveries == ["rejoined"]
    assert report.split_brain_observations == 0, report.events
    assert missing_acked(endpoints[f"{instance_id}-shadow"], writer.stats.acked_ids) == []
    HAProxyManager(settings.state_dir / "haproxy").stop()
