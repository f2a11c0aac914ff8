"""``make bench-cutover``: planned cutovers back and forth under load, then one kill -9.

Everything is real: a PostgreSQL primary and its tier-1 shadow, HAProxy, the Temporal dev
server and a ``python -m workers.main`` worker running the registered ``CutoverWorkflow``.
A writer commits ~150 single-row transactions per second through HAProxy and retries every
10 ms; a monitor polls both servers and the router throughout. After each planned cutover
the former primary is rewound (``pg_rewind``) and rejoins as the new primary's synchronous
standby, so the next cutover goes back. Finally the serving primary is SIGKILLed; a simple
detector (two failed probes 50 ms apart, polled every 100 ms) starts an emergency cutover;
``unplanned_failover_ms`` runs from the kill to the first write acknowledged after the
writer's first failure (an ack in flight at the kill does not end the outage).

``blackout_ms`` is the longest gap between two acknowledged writes during the workflow: the
last write on the old primary to the first on the new one, which includes the writer's own
retry pause (10 ms) and its new connection. ``failed_client_ops`` counts the writer's failed
attempts from the workflow's start to 0.5 s after its end. The machine's load average is
recorded at the start and the end: the figures scale with it on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts.cutover import CutoverInput, CutoverResult, cutover_workflow_id
from contracts.shadow import PlatformRequest
from contracts.spec import ProtectionSpec
from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.pki import LocalPki
from infra.local.platform import LocalPlatform
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, PgServer
from infra.local.rejoin import rejoin_as_standby
from workers.registry import platforms
from workers.settings import REPO_ROOT, load_settings
from workers.split_brain import SplitBrainMonitor, blackout_ms, failures_between
from workers.workload import Writer, missing_acked, prepare_table
from workflows.cutover import CutoverWorkflow

GOALS = {"blackout_ms_p50": 50, "blackout_ms_p99": 300, "failed_client_ops_per_cutover": 5,
         "lost_acked_writes": 0, "split_brain_observations": 0, "unplanned_failover_ms": 5000}
PRIMARY_SETTINGS = {"max_wal_senders": "10", "wal_log_hints": "on", "wal_keep_size": "'256MB'"}
"""The primary's settings: ``wal_log_hints`` for ``pg_rewind``, WAL kept for the rejoin."""


class Bench:
    """One protected instance, its router, Temporal and a worker, in a scratch state dir."""

    def __init__(self, state_dir: Path, tier: int, wal_segsize_mb: int) -> None:
        self.state_dir = state_dir
        self.wal_segsize_mb = wal_segsize_mb
        passphrase = state_dir / "pulumi-passphrase"
        passphrase.write_text("bench\n")
        self.settings = load_settings({"SHADOWSHIFT_STATE_DIR": str(state_dir),
                                       "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE": str(passphrase)})
        primary_port, shadow_port, router_port = free_ports(3)
        self.instance_id = f"bench-{uuid.uuid4().hex[:6]}"
        self.request = PlatformRequest(ProtectionSpec(self.instance_id, "local", tier,
                                                      primary_port, shadow_port, router_port))
        self.primary = PgServer(home=state_dir / "primary", port=primary_port)
        self.haproxy = HAProxyManager(state_dir / "haproxy")
        platform = platforms(self.settings).platform_for(self.request)
        assert isinstance(platform, LocalPlatform)  # the bench drives local servers directly
        self.platform = platform
        self.worker: subprocess.Popen[bytes] | None = None

    def servers(self) -> dict[str, PgServer]:
        """Server process of each node."""
        spec = self.platform.spec
        return {spec.primary_node: self.primary,
                spec.shadow_node: PgServer(home=spec.shadow_home, port=spec.shadow_port)}

    def start(self, temporal_address: str, task_queue: str) -> None:
        """Primary (wal_log_hints for pg_rewind), router, tier-1 shadow, worker."""
        # Promotion copies the last WAL segment to the new timeline and fsyncs all of it: with
        # the default 16 MB segments that is most of the promote step (and of the blackout).
        # TLS as the worker's default replication sslmode (verify-full) requires.
        tls = LocalPki.of(self.state_dir).server_cert(self.instance_id).settings()
        self.primary.init(settings={**PRIMARY_SETTINGS, **tls},
                          initdb_options=[f"--wal-segsize={self.wal_segsize_mb}"])
        self.primary.start()
        self.haproxy.ensure_service(self.instance_id, self.request.spec.router_port,
                                    [ServerEntry(self.instance_id, "127.0.0.1",
                                                 self.request.spec.primary_port)])
        self.platform.provision_shadow()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
        env.update(SHADOWSHIFT_TEMPORAL_ADDRESS=temporal_address,
                   SHADOWSHIFT_TASK_QUEUE=task_queue,
                   SHADOWSHIFT_STATE_DIR=str(self.state_dir),
                   SHADOWSHIFT_PULUMI_PASSPHRASE_FILE=str(self.settings.pulumi_passphrase_file),
                   SHADOWSHIFT_LOG_LEVEL="WARNING")
        with (self.state_dir / "worker.log").open("ab") as log:
            self.worker = subprocess.Popen([sys.executable, "-m", "workers.main"], cwd=REPO_ROOT,
                                           env=env, stderr=log, start_new_session=True)

    def wait_in_sync(self, primary: str, standby: str, timeout_s: float = 60) -> None:
        """Until ``standby`` streams synchronously (tier 1) with a small lag."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.platform.replication_between(primary, standby)
            tier_ok = self.request.spec.tier != 1 or status.sync_state == "sync"
            if status.state == "streaming" and tier_ok and (status.lag_bytes or 0) < 2**20:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{standby} not in sync with {primary}: {status}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the worker, the servers and the router."""
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            self.worker.wait(timeout=60)
        self.platform.close()
        for server in self.servers().values():
            server.stop(mode="immediate")
        self.haproxy.stop()


async def _cutover(client: Client, bench: Bench, task_queue: str, mode: str) -> CutoverResult:
    result: CutoverResult = await client.execute_workflow(
        CutoverWorkflow.run, CutoverInput(bench.request, mode=mode),
        id=f"{cutover_workflow_id(bench.instance_id)}-{uuid.uuid4().hex[:6]}",
        task_queue=task_queue)
    return result


def _detect_death(endpoint: PgEndpoint) -> float:
    """Poll every 100 ms; two failed probes 50 ms apart mean dead. Returns the moment."""
    failures = 0
    while True:
        try:
            with endpoint.connect(timeout_s=1) as conn:
                conn.execute("SELECT 1")
            failures = 0
            time.sleep(0.1)
        except Exception:
            failures += 1
            if failures >= 2:
                return time.monotonic()
            time.sleep(0.05)


async def run(
    cutovers: int, tier: int, rate: float, output: Path, wal_segsize_mb: int
) -> dict[str, Any]:
    """Run the benchmark and write ``output``."""
    root = Path(tempfile.mkdtemp(prefix="bench-cutover-"))
    root.chmod(0o755)
    bench = Bench(root, tier, wal_segsize_mb)
    task_queue = f"bench-cutover-{uuid.uuid4().hex[:6]}"
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    load_start = os.getloadavg()[0]
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal,
                                                dev_server_log_level="error")
    try:
        address = env.client.service_client.config.target_host
        await asyncio.to_thread(bench.start, address, task_queue)
        spec = bench.platform.spec
        await asyncio.to_thread(bench.wait_in_sync, spec.primary_node, spec.shadow_node)
        prepare_table(PgEndpoint(port=bench.request.spec.router_port))
        return await _measure(env.client, bench, task_queue, cutovers, rate, output,
                              load_start)
    finally:
        bench.stop()
        await env.shutdown()
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)


async def _measure(client: Client, bench: Bench, task_queue: str, cutovers: int, rate: float,
                   output: Path, load_start: float) -> dict[str, Any]:
    router = PgEndpoint(port=bench.request.spec.router_port)
    monitor = SplitBrainMonitor({n: bench.platform.endpoint(n) for n in bench.servers()},
                                bench.haproxy, bench.instance_id)
    writer = Writer(router, rate=rate, retry_interval_s=0.01)
    planned: list[dict[str, Any]] = []
    with writer, monitor:
        await asyncio.sleep(2)
        for index in range(cutovers):
            started = time.monotonic()
            result = await _cutover(client, bench, task_queue, "planned")
            ended = time.monotonic()
            if result.outcome != "completed":
                raise RuntimeError(f"cutover {index} ended {result.outcome}: {result.detail}")
            await asyncio.sleep(0.5)
            rejoin_started = time.monotonic()
            await asyncio.to_thread(rejoin_as_standby, bench.platform, result.former_primary)
            await asyncio.to_thread(bench.wait_in_sync, result.primary, result.former_primary)
            planned.append({
                "to": result.primary, "workflow_ms": round((ended - started) * 1000, 1),
                "blackout_ms": blackout_ms(writer.stats.ack_times, started, ended),
                "failed_client_ops": failures_between(writer.stats.failure_times, started,
                                                      ended + 0.5),
                "critical_path_ms": result.critical_path_ms, "step_ms": result.step_ms,
                "rejoin_s": round(time.monotonic() - rejoin_started, 2)})
            print(f"cutover {index + 1}: {planned[-1]}", flush=True)
            await asyncio.sleep(0.5)
        primary = result.primary
        killed_at = time.monotonic()
        bench.servers()[primary].kill()
        detected_at = await asyncio.to_thread(_detect_death, bench.platform.endpoint(primary))
        emergency = await _cutover(client, bench, task_queue, "emergency")
        done_at = time.monotonic()
        await asyncio.sleep(2)
    stats = writer.stats
    # An ack in flight at the kill (orphaned backend) does not end the outage; failures start it.
    outage_start = min((t for t in stats.failure_times if t > killed_at), default=killed_at)
    after_kill = [t for t in stats.ack_times if t > outage_start]
    lost = missing_acked(bench.platform.endpoint(emergency.primary), stats.acked_ids)
    blackouts = [p["blackout_ms"] for p in planned]
    steps = sorted({step for p in planned for step in p["step_ms"]})
    results: dict[str, Any] = {
        "cutovers": len(planned),
        "tier": bench.request.spec.tier,
        "write_rate_target_tx_s": rate,
        "wal_segment_size_mb": bench.wal_segsize_mb,
        "acked_writes": len(stats.acked_ids),
        "blackout_ms_p50": round(float(np.percentile(blackouts, 50)), 1),
        "blackout_ms_p99": round(float(np.percentile(blackouts, 99)), 1),
        "blackout_ms_max": max(blackouts),
        "failed_client_ops": sum(p["failed_client_ops"] for p in planned),
        "failed_client_ops_max_per_cutover": max(p["failed_client_ops"] for p in planned),
        "lost_acked_writes": len(lost),
        "split_brain_observations": monitor.report.split_brain_observations,
        "monitor_samples": monitor.report.samples,
        "router_both_weighted": monitor.report.router_both_weighted,
        "unplanned_failover_ms": round((min(after_kill) - killed_at) * 1000, 1)
        if after_kill else None,
        "unplanned_detection_ms": round((detected_at - killed_at) * 1000, 1),
        "unplanned_workflow_ms": round((done_at - detected_at) * 1000, 1),
        "unplanned_step_ms": emergency.step_ms,
        "unplanned_possible_loss_bytes": emergency.possible_loss_bytes,
        "step_ms_median": {s: round(statistics.median(p["step_ms"][s] for p in planned
                                                      if s in p["step_ms"]), 2) for s in steps},
        "critical_path_ms_median": round(statistics.median(p["critical_path_ms"]
                                                           for p in planned), 2),
        "workflow_ms_median": round(statistics.median(p["workflow_ms"] for p in planned), 1),
        "rejoin_s_median": round(statistics.median(p["rejoin_s"] for p in planned), 2),
        "per_cutover": planned,
        "goals": GOALS,
        "machine": {"cpus": os.cpu_count(), "load_average_1m_start": round(load_start, 2),
                    "load_average_1m_end": round(os.getloadavg()[0], 2),
                    "note": "shared cores; other engineers' jobs ran"},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cutovers", type=int, default=20)
    parser.add_argument("--tier", type=int, default=1, choices=(1, 2))
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--wal-segsize-mb", type=int, default=1, choices=(1, 2, 4, 8, 16, 64),
                        help="WAL segment size of the bench primary (promotion copies one)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/cutover.json"))
    args = parser.parse_args()
    results = asyncio.run(
        run(args.cutovers, args.tier, args.rate, args.output, args.wal_segsize_mb)
    )
    summary = {k: v for k, v in results.items() if k not in ("per_cutover", "goals", "machine")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
