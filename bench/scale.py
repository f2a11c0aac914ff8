"""``make bench-scale``: N protected instances on one worker and one dev server (this machine).

The platform is the ``scale-double`` (``bench/scale_double.py``; named in the output and the
``ShadowShiftPlatform`` search attribute): it answers provisioning, replication status and
metric samples at once, so what is measured is our orchestration — protection workflows, the
fleet watcher's sampling and batched LightGBM scoring, signals, upserts and Temporal itself.

Phases, each reported:

1. ``start``: a fresh dev server (in-memory SQLite, metrics endpoint) and the bench worker process
   (``bench/scale_worker.py``: the production registry with the double), the fleet watcher,
   then N ``InstanceProtectionWorkflow`` starts (as ``workers.protect.start_protection`` does
   them, minus the spec check that refuses the double); timed until visibility shows all N in
   phase ``protected``.
2. ``settle``: one discovery and a few samples, so every instance has had its first report.
3. ``steady``: a window of ``--window-s`` seconds: worker and dev-server CPU (% of a core) and
   RSS; billable actions counted from the histories (``workers.demo_report``, heartbeats from
   the server's ``action`` counter), extrapolated per protected instance-hour (goal <= 12),
   plus the one re-report per instance each watcher restart costs (a new run forgets what was
   reported). Then what onboarding cost each protection (its events before the window).
4. ``crossing``: ``--risky`` instances, spread over the fleet, switch their metric stream to
   the recorded degradation a few steps before the score crosses the threshold; from each
   protection's history: crossing → cutover child started (p50/p99). The double has no cutover
   operations, so each cutover then fails at preflight (``Unsupported``) and the protection
   returns to ``protected``; the saga's own cost is ``make bench-cutover``'s subject.

Usage: ``python -m bench.scale [--instances 1000] [--window-s 240] [--quick] [--output P]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench import scale_double
from bench.scale_measure import ProcessWatch, crossing_times, latency_summary, watch_window
from contracts import search_attributes
from contracts.policy import FleetBudget, Policy
from contracts.spec import ProtectionSpec
from contracts.watch import WatchFleetInput
from infra.local.ports import free_port
from models.registry import ModelRegistry
from models.scoring import score_series
from models.trace import load_trace
from workers import demo_report
from workers.demo_trace import build_synthetic_trace
from workers.protect import ensure_fleet_watcher, start_protection

GOAL_ACTIONS_PER_INSTANCE_HOUR = 12.0
PROTECTED = "WorkflowType = 'InstanceProtectionWorkflow' AND ShadowShiftPhase = 'protected'"


def say(message: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def plan_trace(state_dir: Path, threshold: float, window: int) -> scale_double.TracePlan:
    """The demo's recorded trace; injected instances start 2 steps before the offline score
    first reaches ``threshold`` after the degradation's onset."""
    trace = build_synthetic_trace(state_dir / "trace", healthy_hours=24)
    predictor, _ = ModelRegistry(state_dir / "models").load_current()
    loaded = load_trace(trace.csv_path, "timestamp", list(trace.columns.items()))
    scores = score_series(loaded.times, loaded.values, predictor,
                          policy=Policy(threshold=threshold), max_samples=window)
    onset = int(np.searchsorted(loaded.times, trace.onset))
    high = np.nonzero(scores.readiness_score[onset:] >= threshold)[0]
    if not len(high):
        raise RuntimeError("the recorded trace never reaches the threshold offline")
    plan = scale_double.TracePlan(str(trace.csv_path), onset, max(onset, onset + int(high[0]) - 2))
    plan.write(state_dir)
    return plan


async def start_protections(client: Client, ids: list[str], task_queue: str) -> float:
    """Start one protection per id (20 starts in flight); seconds taken."""
    gate = asyncio.Semaphore(20)
    started = time.monotonic()

    async def start(instance_id: str) -> None:
        # "local" with ports nothing listens on: the bench worker serves it with the double.
        spec = ProtectionSpec(instance_id, platform="local", tier=2, primary_port=20000,
                              shadow_port=20001, router_port=20002, policy=Policy())
        async with gate:
            await start_protection(client, spec, task_queue=task_queue)

    await asyncio.gather(*(start(i) for i in ids))
    return time.monotonic() - started


async def wait_count(client: Client, query: str, target: int, timeout_s: float) -> int:
    """Poll visibility until ``query`` counts ``target`` (or the timeout); the last count."""
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        count = (await client.count_workflows(query)).count
        if count >= target:
            break
        await asyncio.sleep(2.0)
    return count


def server_pid() -> int:
    """The dev server started by this process."""
    for child in psutil.Process().children(recursive=True):
        if child.name() == "temporal":
            return child.pid
    raise RuntimeError("no temporal dev server among this process's children")


async def run(args: argparse.Namespace, state_dir: Path) -> dict[str, Any]:
    """Every phase; returns the results."""
    threshold = Policy().threshold
    watch_input = WatchFleetInput(
        sample_interval_s=args.sample_interval_s, discovery_interval_s=args.discovery_interval_s,
        # The fleet budget is not under test: let every injected instance through.
        budget=FleetBudget(max_concurrent=args.risky, max_per_hour=10 * args.risky),
    )
    plan = plan_trace(state_dir, threshold, watch_input.window_samples)
    metrics_port = free_port()
    say(f"Starting the dev server (metrics on :{metrics_port}).")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=shutil.which("temporal") or str(Path(sys.executable).parent
                                                                 / "temporal"),
        search_attributes=search_attributes.ALL, dev_server_log_level="error",
        dev_server_extra_args=["--metrics-port", str(metrics_port)],
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    client, task_queue = env.client, "bench-scale"
    address = client.service_client.config.target_host
    log = (state_dir / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.scale_worker", "--address", address,
         "--task-queue", task_queue, "--state-dir", str(state_dir)],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    watches = [ProcessWatch("worker", worker.pid), ProcessWatch("dev_server", server_pid())]
    results: dict[str, Any] = {"platform": scale_double.PLATFORM, "instances": args.instances}
    try:
        await ensure_fleet_watcher(client, task_queue=task_queue, request=watch_input)
        ids = [f"scale-{index:04d}" for index in range(args.instances)]
        say(f"Starting {len(ids)} protections.")
        for watch in watches:
            watch.begin()
        began = time.monotonic()
        issue_s = await start_protections(client, ids, task_queue)
        protected = await wait_count(client, PROTECTED, len(ids), args.start_timeout_s)
        start_s = time.monotonic() - began
        results["start"] = {
            "start_calls_s": round(issue_s, 1), "all_protected_s": round(start_s, 1),
            "protected": protected, "processes": {w.name: w.end() for w in watches},
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        say(f"{protected}/{len(ids)} protected after {start_s:.0f} s.")
        if protected < len(ids):
            raise RuntimeError(f"only {protected} of {len(ids)} protections reached protected")
        settle_s = args.discovery_interval_s + 3 * args.sample_interval_s
        say(f"Settling for {settle_s:.0f} s (first reports), then a {args.window_s:.0f} s window.")
        await asyncio.sleep(settle_s)
        results["steady"] = await steady_window(client, watches, args, metrics_url,
                                                watch_input.max_duration_s)
        results["crossing"] = await crossing(client, ids, args, state_dir, threshold, plan)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        await env.shutdown()
    return results


async def steady_window(client: Client, watches: list[ProcessWatch], args: argparse.Namespace,
                        metrics_url: str, watcher_max_duration_s: float) -> dict[str, Any]:
    """CPU, RSS and actions over the steady-state window."""
    load_before = os.getloadavg()[0]
    server_before = demo_report.server_actions(metrics_url)
    window_start = time.time()
    processes = await watch_window(watches, args.window_s)
    window_end = time.time()
    server_after = demo_report.server_actions(metrics_url)
    delta = {kind: value - server_before.get(kind, 0.0) for kind, value in server_after.items()
             if value != server_before.get(kind, 0.0)}
    say("Counting billable events in every history of the window.")
    count = await demo_report.count_history_actions(client, window_start, window_end)
    count.heartbeats = delta.get(demo_report.HEARTBEAT_ACTION, 0.0)
    count.server_by_type = delta
    actions = demo_report.per_instance_hour(count, args.instances, watcher_max_duration_s)
    by_workflow = actions.pop("actions_by_workflow")
    protections = [n for wf, n in by_workflow.items() if wf.startswith("protect-")]
    actions["protections_with_actions_in_window"] = len(protections)
    actions["watcher_actions_in_window"] = sum(
        n for wf, n in by_workflow.items() if not wf.startswith("protect-"))
    # A new watcher run starts with an empty memory of what it last reported, so it reports
    # every instance once more (one signal each): not in a short window, added here.
    rereports = 3600.0 / watcher_max_duration_s
    actions["watcher_restart_rereports_per_instance_hour_added"] = round(rereports, 2)
    actions["temporal_actions_per_instance_hour_with_rereports"] = round(
        actions["temporal_actions_per_instance_hour"] + rereports, 2)
    actions["goal_per_instance_hour"] = GOAL_ACTIONS_PER_INSTANCE_HOUR
    actions["meets_goal"] = actions["temporal_actions_per_instance_hour_with_rereports"] <= \
        GOAL_ACTIONS_PER_INSTANCE_HOUR
    say("Counting what onboarding cost each protection (events before the window).")
    before = await demo_report.count_history_actions(client, 0.0, window_start)
    per_protection = [n for wf, n in before.by_workflow.items() if wf.startswith("protect-")]
    actions["onboarding_actions_per_protection"] = {
        "mean": round(sum(per_protection) / max(1, len(per_protection)), 2),
        "min": min(per_protection, default=0), "max": max(per_protection, default=0),
        "by_kind_all_workflows": before.by_kind,
    }
    return {"processes": processes, "actions": actions,
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


async def crossing(client: Client, ids: list[str], args: argparse.Namespace, state_dir: Path,
                   threshold: float, plan: scale_double.TracePlan) -> dict[str, Any]:
    """Inject rising risk into a spread-out sample; crossing → cutover start from histories."""
    step = max(1, len(ids) // args.risky)
    risky = ids[::step][: args.risky]
    injected_at = time.time()
    scale_double.write_injection(state_dir, risky)
    say(f"Injected rising risk into {len(risky)} instances; waiting for their cutovers.")
    query = "WorkflowType = 'CutoverWorkflow'"
    started = await wait_count(client, query, len(risky), args.crossing_timeout_s)
    rows = [await crossing_times(client, f"protect-{i}", i, injected_at, threshold)
            for i in risky]
    cut_over = sorted([execution.id.removeprefix("cutover-")
                       async for execution in client.list_workflows(query)])
    return {"threshold": threshold, "trace_rows": dataclasses.asdict(plan),
            "cutover_workflows_started": started, "injected": risky,
            "cutover_instances": cut_over,
            **latency_summary(rows, injected_at),
            "per_instance": [dataclasses.asdict(r) for r in rows]}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--window-s", type=float, default=240.0)
    parser.add_argument("--risky", type=int, default=20)
    parser.add_argument("--sample-interval-s", type=float, default=15.0)
    parser.add_argument("--discovery-interval-s", type=float, default=30.0)
    parser.add_argument("--start-timeout-s", type=float, default=1800.0)
    parser.add_argument("--crossing-timeout-s", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true",
                        help="20 instances, 3 injected, 2 s samples, 30 s window (a smoke run)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/scale.json"))
    parser.add_argument("--keep-state", type=Path, default=None,
                        help="run in this (new) folder and keep it (worker log, trace)")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.risky, args.window_s = 20, 3, 30.0
        args.sample_interval_s, args.discovery_interval_s = 2.0, 2.0
        args.start_timeout_s, args.crossing_timeout_s = 120.0, 90.0
    # SIGTERM unwinds like Ctrl-C, so the worker process and the dev server are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    load = os.getloadavg()
    if args.keep_state is not None:
        args.keep_state.mkdir(parents=True)
        results = asyncio.run(run(args, args.keep_state.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
            results = asyncio.run(run(args, Path(folder)))
    results["parameters"] = {k: v for k, v in vars(args).items()
                             if k not in ("output", "keep_state")}
    results["machine"] = {"cpu_count": os.cpu_count(),
                          "load_average_at_start": [round(x, 2) for x in load],
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
