"""``make bench-kube-cutover``: planned cutovers through the Kubernetes path, side by side with
the same cutovers on the hosts platform.

One machine, everything real but the containers: the Temporal dev server, the loopback control
plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK), two namespace hosts with
their agents as the data plane of two nodes, the control worker as the user bound to
``docs/kubernetes/rbac.yaml``, HAProxy. Two tier-1 protections share the hosts: ``kdb`` on
``platform: kubernetes`` (its shadow a pod the scheduler placed; each shift relabels the pods
and waits for the EndpointSlice controller before HAProxy follows) and ``hdb`` on ``platform:
hosts`` (HAProxy only). Rounds alternate between them; each cutover is asked for with
``request_cutover`` while a writer commits about 100 rows a second through the protection's
router, and ends when the former primary has rejoined.

Per cutover: ``blackout_ms`` (the longest gap between two acknowledged writes during it),
``failed_client_ops``, ``cutover_s`` (request to the protection counting it) and lost
acknowledged writes. The machine's load average is recorded: absolute figures scale with it,
the ratio of the two platforms measured side by side much less.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from contracts.policy import Policy
from contracts.protection import CutoverRequest
from contracts.spec import ProtectionSpec
from infra.kubernetes.cluster import LoopbackCluster
from infra.kubernetes.toolchain import find_toolchain
from infra.local.haproxy import HAProxyManager
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint
from infra.pulumi_engine import StackDriver
from workers.demo_services import dev_server
from workers.hosts_lab import HostsLab, lab_settings
from workers.kube_lab import (
    WORKER_USER,
    ensure_namespace,
    grant_worker,
    host_nodes,
    kube_spec,
    local_volumes,
    primary_pod,
)
from workers.protect import start_protection, status_when
from workers.registry import new_worker, pulumi_config
from workers.settings import Settings
from workers.split_brain import blackout_ms, failures_between
from workers.workload import Writer, missing_acked, prepare_table
from workflows.protection import InstanceProtectionWorkflow

POLICY = Policy(threshold=100, consecutive_readings=100, cooldown_s=0)
"""Cutovers only when asked: no prediction can fire, no cooldown between rounds."""
NAMESPACE = "bench"


async def _flowing(writer: Writer, since: float, count: int = 20) -> None:
    async with asyncio.timeout(30):
        while sum(1 for t in writer.stats.ack_times if t > since) < count:
            await asyncio.sleep(0.05)


async def _one_cutover(handle: WorkflowHandle[Any, Any], spec: ProtectionSpec,
                       endpoints: dict[str, PgEndpoint], rate: float) -> dict[str, Any]:
    """Ask for a cutover under writes; what the writer saw."""
    before = await status_when(handle, lambda s: s.phase == "protected", 240)
    router = PgEndpoint(port=spec.router_port)
    with Writer(router, rate=rate) as writer:
        await _flowing(writer, time.monotonic() - 60)
        start = time.monotonic()
        await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                    CutoverRequest("bench"))
        counted = await status_when(handle, lambda s: s.cutovers == before.cutovers + 1, 240,
                                    interval_s=0.05)  # cutover_s is timed by it
        cutover_s = time.monotonic() - start
        after = await status_when(handle, lambda s: s.phase == "protected"
                              and len(s.recoveries) == len(before.recoveries) + 1, 240)
        end = time.monotonic()
        await _flowing(writer, end)
    lost = missing_acked(endpoints[after.primary_node], writer.stats.acked_ids)
    return {"to": counted.primary_node, "cutover_s": round(cutover_s, 3),
            "blackout_ms": blackout_ms(writer.stats.ack_times, start, end),
            "failed_client_ops": failures_between(writer.stats.failure_times, start, end),
            "acked_writes": len(writer.stats.acked_ids), "lost_acked_writes": len(lost)}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    blackouts = [r["blackout_ms"] for r in runs]
    return {"cutovers": len(runs), "blackout_ms_p50": statistics.median(blackouts),
            "blackout_ms_max": max(blackouts),
            "cutover_s_p50": statistics.median(r["cutover_s"] for r in runs),
            "failed_client_ops_p50": statistics.median(r["failed_client_ops"] for r in runs),
            "lost_acked_writes": sum(r["lost_acked_writes"] for r in runs), "runs": runs}


async def _measure(client: Client, settings: Settings, lab: HostsLab, cluster: LoopbackCluster,
                   task_queue: str, rounds: int, rate: float) -> dict[str, Any]:
    api, pool = cluster.api(), f"bench-{uuid.uuid4().hex[:4]}"
    first, second = lab.hosts
    with host_nodes(api, lab, pool) as node_of, local_volumes(api, node_of, "kdb"):
        ensure_namespace(api, NAMESPACE)
        grant_worker(api, NAMESPACE)
        await lab.wait_for_agents(client)
        kube_port, hosts_port = 5432, 5433
        await lab.ensure_primary(client, task_queue, first, "kdb", kube_port)
        await lab.ensure_primary(client, task_queue, first, "hdb", hosts_port)
        await asyncio.to_thread(primary_pod, api, NAMESPACE, "pg-kdb", node_of[first],
                                kube_port)
        router_ports = free_ports(2)
        specs = {
            "kubernetes": kube_spec(lab, pool, NAMESPACE, "kdb", "pg-kdb", kube_port,
                                    router_ports[0], policy=POLICY),
            "hosts": dataclasses.replace(lab.spec("hdb", first, second, router_ports[1],
                                                  tier=1, port=hosts_port), policy=POLICY),
        }
        handles = {name: await start_protection(client, spec, task_queue=task_queue)
                   for name, spec in specs.items()}
        for name, handle in handles.items():
            await status_when(handle, lambda s: s.phase == "protected", 300)
            prepare_table(PgEndpoint(port=specs[name].router_port))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
        for _ in range(rounds):
            for name, spec in specs.items():
                port = spec.primary_port
                endpoints = {spec.instance_id: PgEndpoint(host=str(lab.hosts[first].address),
                                                          port=port),
                             f"{spec.instance_id}-shadow": PgEndpoint(
                                 host=str(lab.hosts[second].address), port=port)}
                run = await _one_cutover(handles[name], spec, endpoints, rate)
                print(f"{name}: {run}", flush=True)
                runs[name].append(run)
        for handle in handles.values():
            await handle.terminate("bench over")
    return {name: _summary(found) for name, found in runs.items()}


async def run(rounds: int, rate: float) -> dict[str, Any]:
    """Start everything, measure, stop everything."""
    root = Path(tempfile.mkdtemp(prefix="ssk", dir="/tmp"))  # short: socket paths
    root.chmod(0o755)
    settings = lab_settings(root / "state")
    tag = uuid.uuid4().hex[:4]
    try:
        async with dev_server() as server:
            client = server.client
            host, port = server.address.rsplit(":", 1)
            with LoopbackCluster(find_toolchain()) as cluster:
                settings = dataclasses.replace(
                    settings, kubeconfig=cluster.user_kubeconfig(WORKER_USER))
                lab = await asyncio.to_thread(
                    HostsLab.create, StackDriver(pulumi_config(settings)), root,
                    (f"k{tag}a", f"k{tag}b"), (host, int(port)), disk_mib=1024)
                try:
                    for name in lab.hosts:
                        lab.start_agent(name)
                    task_queue = f"bench-kube-{tag}"
                    with concurrent.futures.ThreadPoolExecutor(
                            settings.max_concurrent_activities) as pool:
                        async with new_worker(client, settings, pool, task_queue=task_queue):
                            return await _measure(client, settings, lab, cluster, task_queue,
                                                  rounds, rate)
                finally:
                    HAProxyManager(settings.state_dir / "haproxy").stop()
                    await asyncio.to_thread(lab.close)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--output", type=Path, default=Path("bench/results/kube_cutover.json"))
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 50 or not 10 <= args.rate <= 1000:
        parser.error("--rounds must be within 1..50 and --rate within 10..1000")
    load_before = os.getloadavg()[0]
    started = time.time()
    results = asyncio.run(run(args.rounds, args.rate))
    kube, hosts = results["kubernetes"], results["hosts"]
    report = {
        "benchmark": "kube_cutover", "rounds": args.rounds, "write_rate": args.rate,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "duration_s": round(time.time() - started, 1),
        "blackout_ratio_kubernetes_to_hosts_p50": round(
            kube["blackout_ms_p50"] / hosts["blackout_ms_p50"], 3),
        **results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("kubernetes", "hosts")}))
    for name in ("kubernetes", "hosts"):
        print(name, {k: v for k, v in results[name].items() if k != "runs"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
