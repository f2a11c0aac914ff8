"""The end-to-end demo, phase by phase (``make demo``; the entry point is ``workers.demo``).

Protect a primary PostgreSQL under client load, replay a real incident recorded on an
application server (ASD; ``workers/demo_trace.py``) into its metrics, let the fleet watcher's
model predict, cut over before the failure point, fail the primary there, let the former
primary rejoin as the shadow, then measure and report.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from temporalio.api.enums.v1 import EventType

from contracts.cutover import cutover_workflow_id
from contracts.policy import Policy
from contracts.watch import WatchFleetInput
from infra.local.metric_overlay import remove_overlay, write_overlay
from models.predictor import DEFAULT_MODEL_PATH, Predictor
from workers import demo_report as report
from workers.demo_services import DevServer, HostsService, say, worker_process
from workers.demo_trace import (
    DEMO_HEALTHY_HOURS,
    DEMO_THRESHOLD,
    DemoTrace,
    OfflineVerdict,
    offline_verdict,
)
from workers.demo_watch import TASK_QUEUE, HeartbeatClock, LagRecorder, Progress
from workers.protect import ensure_fleet_watcher, start_protection
from workers.split_brain import blackout_ms, failures_between
from workers.workload import Writer, prepare_table, wait_until_present


@dataclass(frozen=True)
class DemoOptions:
    """Knobs of one demo run; the defaults are ``make demo``'s."""

    trace: str = "asd"
    """``asd`` (the real incident) or ``synthetic`` (``workers.demo_trace.TRACE_KINDS``)."""
    healthy_hours: float = DEMO_HEALTHY_HOURS
    """Trace hours before the incident: provisioning plus the steady-state window (the
    model's novelty baseline needs about a day of the instance's own history)."""
    speedup: float = 300.0
    """Trace seconds per wall second (one watcher sample = one 5-minute trace step)."""
    sample_interval_s: float = 1.0
    """The fleet watcher's sampling interval."""
    write_rate: float = 50.0
    """Client transactions per second through HAProxy."""
    tier: int = 1
    """Shadow tier (1: synchronous, no acknowledged write can be lost)."""
    threshold: float = DEMO_THRESHOLD
    """The protection's readiness threshold (why this value: ``demo_trace.DEMO_THRESHOLD``)."""
    consecutive_readings: int = 3
    """High readings in a row before migrating."""
    recovery_timeout_s: float = 90.0
    """How long to wait for the former primary to rejoin as the shadow."""


async def run_demo(options: DemoOptions, trace: DemoTrace, server: DevServer,
                   service: HostsService, state_dir: Path, out_dir: Path,
                   stop: asyncio.Event) -> dict[str, Any]:
    """Everything after the services are up; returns the summary."""
    client = server.client
    policy = Policy(threshold=options.threshold,
                    consecutive_readings=options.consecutive_readings)
    verdict = offline_verdict(trace, Predictor.load(DEFAULT_MODEL_PATH), policy, 48)
    _say_verdict(verdict, options)
    async with worker_process(server.address, state_dir, TASK_QUEUE,
                              server.key_file,
                              service.lab.worker_environment()) as worker:
        progress = Progress(client, service.instance_id, worker, stop)
        await service.create_primary(client, TASK_QUEUE)
        primary_identity = service.identity(service.instance_id)
        spec = service.spec(policy, options.tier)
        service.route_primary(spec)
        say(f"Primary PostgreSQL {service.instance_id} at {primary_identity} on "
            f"{service.primary_host}, made by its agent, behind HAProxy on port "
            f"{service.router_port}.")
        prepare_table(service.router)
        writer = Writer(service.router, rate=options.write_rate).start()
        lag = LagRecorder(service).start()
        heartbeats = HeartbeatClock(client)
        mono_offset = time.monotonic() - time.time()
        try:
            say(f"Client load: {options.write_rate:g} writes/s through HAProxy on port "
                f"{service.router_port}, every acknowledged commit recorded.")
            wall_start = time.time()
            write_overlay(state_dir, primary_identity, trace.csv_path, dict(trace.columns),
                          speedup=options.speedup, wall_start=wall_start,
                          exclusive=trace.exclusive)
            onset_wall = trace.wall_time(trace.onset, wall_start, options.speedup)
            # Steady state ends where the incident's lead window begins: the model may
            # rightly fire inside it, and a cutover is not steady-state cost.
            steady_end = trace.wall_time(trace.onset - trace.lead_window_s, wall_start,
                                         options.speedup)
            failure_wall = trace.wall_time(trace.failure_at, wall_start, options.speedup)
            handle = await start_protection(client, spec, task_queue=TASK_QUEUE)
            watch = WatchFleetInput(sample_interval_s=options.sample_interval_s,
                                    discovery_interval_s=2.0)
            await ensure_fleet_watcher(client, task_queue=TASK_QUEUE, request=watch)
            heartbeats.start()
            say(f"Protecting {service.instance_id} (tier {options.tier}, threshold "
                f"{options.threshold:g}). Watch it: {server.ui_url}/namespaces/default/"
                f"workflows/{spec.workflow_id}")
            protected_at = await progress.wait_for_phase({"protected"}, deadline=steady_end)
            say(f"Shadow in sync: protected after {protected_at - wall_start:.1f} s. Steady "
                f"state until the incident's lead window ({steady_end - time.time():.0f} s).")
            steady = await _steady_state(server, progress, protected_at, steady_end)
            await progress.sleep_until(onset_wall)
            say(f"The incident starts on the primary (replayed: {trace.source}).")
            cutover = await progress.wait_for_cutover(deadline=failure_wall)
            # The recovery runs on its own schedule: it may finish before or after the failure.
            recovery = asyncio.ensure_future(
                progress.wait_for_recovery(failure_wall - time.time()
                                           + options.recovery_timeout_s)
                if cutover else _nothing())
            try:
                await progress.sleep_until(failure_wall)
                killed = _fail_primary(service)
                remove_overlay(state_dir, primary_identity)
                recovered = await recovery
            finally:
                recovery.cancel()
        finally:
            stats = writer.stop()
            lag.stop()
            heartbeats.stop()
            await progress.stop_workflows()
        say("Checking every acknowledged write on the current primary.")
        missing = await asyncio.to_thread(_missing_writes, service, stats.acked_ids)
        raw = [event async for event in handle.fetch_history_events()]
        encrypted = report.payloads_encrypted(raw)
        history = await report.decoded(server.client, raw)
    cutover_window = (cutover[0] + mono_offset, cutover[1] + mono_offset) if cutover else None
    summary: dict[str, Any] = {
        "lead_time_s": round(failure_wall - cutover[0], 2) if cutover else None,
        "lead_time_trace_s": (round((failure_wall - cutover[0]) * options.speedup)
                              if cutover else None),
        "blackout_ms": (blackout_ms(stats.ack_times, *cutover_window)
                        if cutover_window else None),
        "lost_acked_writes": len(missing),
        "acked_writes": len(stats.acked_ids),
        "failed_client_ops": stats.failed_ops,
        "failed_client_ops_during_cutover": (
            failures_between(stats.failure_times, *cutover_window) if cutover_window else None),
        "cutovers": _count_cutovers(history),
        # As stored in Temporal: what a Web UI user without the codec server sees.
        "history_payloads_encrypted": encrypted,
        "last_report_before_failure": _last_report_before(history, failure_wall),
        "primary_killed_while_serving": killed,
        # rejoined: the former primary itself is the shadow; retired: it was destroyed and a
        # fresh copy of the new primary took its place; None: not recovered in time.
        "former_primary_recovery": recovered[1] if recovered else None,
        "former_primary_rejoined_as_shadow": bool(recovered and recovered[1] == "rejoined"),
        "rejoined_after_cutover_s": (round(recovered[0] - cutover[1], 1)
                                     if recovered and recovered[1] == "rejoined" and cutover
                                     else None),
        "recovered_after_cutover_s": (round(recovered[0] - cutover[1], 1)
                                      if recovered and cutover else None),
        **report.per_instance_hour(steady, 1, watch.max_duration_s, heartbeats.per_hour()),
        "watcher_heartbeats_seen": len(heartbeats.times),
        "offline_verdict": asdict(verdict),
        "trace": {"file": str(trace.csv_path), "mode": trace.mode, "source": trace.source,
                  "speedup": options.speedup,
                  "precursor_trace_s": round(trace.failure_at - trace.onset)},
        "web_ui": f"{server.ui_url}/namespaces/default/workflows/{spec.workflow_id}",
    }
    say(f"Temporal actions per protected instance-hour in steady state: "
        f"{summary['temporal_actions_per_instance_hour']} (heartbeats "
        f"{summary['heartbeats_per_hour']}/h from {summary['heartbeats_per_hour_from']}).")
    report.plot_timeline(out_dir / "timeline.png", scores=report.risk_reports(history),
                         threshold=options.threshold, lag=lag.samples, cutover=cutover,
                         onset_at=onset_wall, failure_at=failure_wall, origin=wall_start)
    return summary


async def _steady_state(server: DevServer, progress: Progress, protected_at: float,
                        end_wall: float) -> report.ActionCount:
    """Count actions between ``protected`` and ``end_wall`` (the incident's lead window)."""
    before = await asyncio.to_thread(report.server_actions, server.metrics_url)
    start = max(time.time(), protected_at)
    await progress.sleep_until(end_wall)
    end = time.time()
    after = await asyncio.to_thread(report.server_actions, server.metrics_url)
    count = await report.count_history_actions(server.client, start, end)
    count.heartbeats = after.get(report.HEARTBEAT_ACTION, 0) - before.get(
        report.HEARTBEAT_ACTION, 0)
    count.server_by_type = {kind: value - before.get(kind, 0.0) for kind, value in after.items()
                            if value != before.get(kind, 0.0)}
    say(f"Steady state: {sum(count.by_kind.values())} billable history events and "
        f"{count.heartbeats:.0f} heartbeats in {count.window_s:.0f} s.")
    return count


def _fail_primary(service: HostsService) -> bool:
    """The end of the trace: the old primary's host fails. If it still serves, every process
    on it is killed (the product's failure detection then has to fail over)."""
    serving = service.serving_node()
    if serving == service.instance_id:
        killed = service.fail_host(service.instance_id)
        say(f"The trace ends in failure and the primary still serves traffic: host "
            f"{service.primary_host} fails ({killed} processes killed).")
        return True
    say(f"The trace ends in failure: the old primary's host fails now, but traffic is "
        f"already on {serving}.")
    return False


async def _nothing() -> None:
    return None


def _missing_writes(service: HostsService, acked_ids: list[int]) -> list[int]:
    """Acknowledged ids absent from the current primary (through the router), or from the
    shadow when nothing answers behind the router (the primary failed before any cutover)."""
    try:
        return wait_until_present(service.router, acked_ids, timeout_s=30)
    except psycopg.Error:
        say("Nothing answers behind the router; checking the shadow itself.")
        return wait_until_present(service.endpoint(f"{service.instance_id}-shadow"), acked_ids,
                                  timeout_s=30)


def _count_cutovers(history: list[Any]) -> int:
    """Cutover children that moved traffic (a compensated one changed nothing)."""
    count = 0
    for event in history:
        if event.event_type != EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            continue
        attributes = event.child_workflow_execution_completed_event_attributes
        if not attributes.workflow_execution.workflow_id.startswith(cutover_workflow_id("")):
            continue
        payloads = attributes.result.payloads
        outcome = json.loads(payloads[0].data).get("outcome") if payloads else None
        count += outcome != "compensated"
    return count


def _last_report_before(history: list[Any], moment: float) -> dict[str, Any] | None:
    """The last score reported to the protection before ``moment`` and the node it was
    computed on: after a cutover, the new primary (the watcher follows the router)."""
    before = [(score, node) for at, score, node in report.risk_reports(history) if at < moment]
    return {"readiness_score": round(before[-1][0], 1), "node": before[-1][1]} if before else None


def _say_verdict(verdict: OfflineVerdict, options: DemoOptions) -> None:
    if verdict.lead_time_s is None:
        say("Offline, the model does not fire on this trace; the demo will show a miss.")
        return
    say(f"Offline check of the trace: the model fires {verdict.lead_time_s / 3600:.2f} trace "
        f"hours ({verdict.lead_time_s / options.speedup:.1f} s of demo) before the failure; "
        f"healthy part peaks at score {verdict.healthy_max_score:.0f}.")


def write_summary(out_dir: Path, summary: dict[str, Any],
                  emit: Callable[[str], None] = print) -> Path:
    """``demo-out/summary.json`` and the same JSON on stdout."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "summary.json"
    text = json.dumps(summary, indent=2)
    path.write_text(text + "\n")
    emit(text)
    return path
