"""What the demo measured: Temporal actions in steady state, the score timeline, the plot.

Actions per protected instance-hour (DESIGN.md §2 cost model) are *counted*, not assumed:

1. From the workflow histories of every execution in the namespace (the protection, the fleet
   watcher, any continue-as-new run), the billable events whose time falls inside the
   steady-state window: workflow starts (continue-as-new included), activity schedules and
   retries (attempt > 1), timers, signals received, accepted updates, search-attribute and memo
   upserts, child-workflow starts, external signals and markers (local activities).
2. Heartbeats are not in histories. They come from the dev server's own ``action`` counter
   (the metric Temporal bills from), ``action_type="grpc_RecordActivityTaskHeartbeat"``,
   read at both ends of the window. The counter's total over the window is reported as a
   cross-check only: it also counts the demo's own client calls, and the server flushes it
   periodically, so actions from just before the window (the phase upserts on reaching
   ``protected``) can land in it.
3. Heartbeats per hour come from the measured interval between the watcher's heartbeats as
   the server recorded them (polled with ``DescribeWorkflowExecution``, which is free), over
   the whole demo; the window's own count is the fallback when fewer than two were seen.
4. The rest is extrapolated linearly to one hour, and the sum divided by the protected
   instances.
   A bounded watcher run restarts once per ``max_duration_s`` (one activity start per hour by
   default), which a window of a minute or two cannot contain; that term is added as
   ``3600 / max_duration_s`` and shown separately.

Why intervals: heartbeats reach the server at most every 96 s (80 % of the watcher's 2-minute
heartbeat timeout), so a window of W seconds holds one heartbeat more or less than its share,
an error of up to ``3600 / W`` actions per hour (reported when the fallback is used).
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from workers.payload_codec import ENCODING as ENCRYPTED

BILLABLE = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "workflow_start",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity_start",
    EventType.EVENT_TYPE_TIMER_STARTED: "timer",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search_attribute_upsert",
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED: "memo_upsert",
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "child_workflow_start",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "external_signal",
    EventType.EVENT_TYPE_MARKER_RECORDED: "marker",
}
"""History events that are Temporal Cloud actions, by the name used in the breakdown."""

HEARTBEAT_ACTION = "grpc_RecordActivityTaskHeartbeat"
_ACTION_LINE = re.compile(r'^action\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+-]+)$')


def server_actions(metrics_url: str, namespace: str = "default") -> dict[str, float]:
    """The dev server's ``action`` counter by ``action_type`` for ``namespace``."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = _ACTION_LINE.match(line.strip())
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("namespace") != namespace:
            continue
        kind = labels.get("action_type", "?")
        counts[kind] = counts.get(kind, 0.0) + float(match["value"])
    return counts


@dataclass
class ActionCount:
    """Billable actions counted over a window."""

    window_s: float
    by_kind: dict[str, int] = field(default_factory=dict)
    by_workflow: dict[str, int] = field(default_factory=dict)
    heartbeats: float = 0.0
    server_by_type: dict[str, float] = field(default_factory=dict)
    """The server's ``action`` counter over the window, by ``action_type`` (cross-check)."""

    @property
    def total(self) -> float:
        """History actions plus heartbeats."""
        return sum(self.by_kind.values()) + self.heartbeats


async def count_history_actions(client: Client, start: float, end: float) -> ActionCount:
    """Billable history events of every execution in the namespace within ``[start, end]``."""
    count = ActionCount(window_s=end - start)
    async for execution in client.list_workflows(""):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            kind = _billable(event)
            moment = event.event_time.ToDatetime().timestamp() if event.event_time else 0.0
            if kind is None or not start <= moment <= end:
                continue
            count.by_kind[kind] = count.by_kind.get(kind, 0) + 1
            count.by_workflow[execution.id] = count.by_workflow.get(execution.id, 0) + 1
    return count


def _billable(event: HistoryEvent) -> str | None:
    kind = BILLABLE.get(event.event_type)
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        attempt = event.activity_task_started_event_attributes.attempt
        return "activity_retry" if attempt > 1 else None
    return kind


def per_instance_hour(count: ActionCount, instances: int, watcher_max_duration_s: float,
                      heartbeats_per_hour: float | None = None) -> dict[str, Any]:
    """Extrapolate ``count`` to one hour per protected instance (see the module docstring).

    ``heartbeats_per_hour`` measured from the intervals between heartbeats (see
    ``workers.demo_watch.HeartbeatClock``) replaces the window's whole-number count when given.
    """
    hours = count.window_s / 3600.0
    restarts_per_hour = 3600.0 / watcher_max_duration_s
    history_per_hour = sum(count.by_kind.values()) / hours
    counted = heartbeats_per_hour is None
    heartbeat_rate = count.heartbeats / hours if counted else heartbeats_per_hour
    assert heartbeat_rate is not None
    total = (history_per_hour + heartbeat_rate + restarts_per_hour) / instances
    return {
        "temporal_actions_per_instance_hour": round(total, 1),
        "actions_in_window": {**count.by_kind, "heartbeat": count.heartbeats},
        "actions_by_workflow": count.by_workflow,
        "steady_state_window_s": round(count.window_s, 1),
        "history_actions_per_hour": round(history_per_hour, 1),
        "heartbeats_per_hour": round(heartbeat_rate, 1),
        "heartbeats_per_hour_from": "window count" if counted else "measured intervals",
        "heartbeat_quantisation_per_hour": round(3600.0 / count.window_s, 1) if counted else 0.0,
        "watcher_restarts_per_hour_added": round(restarts_per_hour, 2),
        "server_action_counter_in_window": count.server_by_type,
        "protected_instances": instances,
    }


def payloads_encrypted(events: list[HistoryEvent]) -> bool:
    """Whether the workflow's input (its spec) is stored encrypted in its history."""
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            return bool(payloads) and all(
                p.metadata.get("encoding") == ENCRYPTED for p in payloads)
    return False


async def decoded(client: Client, events: list[HistoryEvent]) -> list[HistoryEvent]:
    """``events`` with the payloads this report reads (signal inputs, child results)
    decrypted in place by ``client``'s codec: the demo's payloads are encrypted."""
    codec = client.data_converter.payload_codec
    if codec is None:
        return events
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            payloads = event.workflow_execution_signaled_event_attributes.input
        elif event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            payloads = event.child_workflow_execution_completed_event_attributes.result
        else:
            continue
        if payloads.payloads:
            plain = await codec.decode(list(payloads.payloads))
            del payloads.payloads[:]
            payloads.payloads.extend(plain)
    return events


def risk_reports(events: list[HistoryEvent]) -> list[tuple[float, float, str]]:
    """``(time, readiness_score, node)`` of every ``report_risk`` signal in a history."""
    reports = []
    for event in events:
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            continue
        attributes = event.workflow_execution_signaled_event_attributes
        if attributes.signal_name != "report_risk" or not attributes.input.payloads:
            continue
        body = json.loads(attributes.input.payloads[0].data)
        reports.append((event.event_time.ToDatetime().timestamp(),
                        float(body["readiness_score"]), str(body.get("node", ""))))
    return reports


def plot_timeline(path: Path, *, scores: list[tuple[float, float, str]], threshold: float,
                  lag: list[tuple[float, float]], cutover: tuple[float, float] | None,
                  onset_at: float, failure_at: float, origin: float) -> None:
    """Score (as reported to the protection), threshold, replication lag and the cutover."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, score_axis = plt.subplots(figsize=(11, 4.5))
    if scores:
        times = [t - origin for t, _, _ in scores] + [failure_at - origin]
        values = [s for _, s, _ in scores] + [scores[-1][1]]
        score_axis.step(times, values, where="post", color="tab:blue",
                        label="readiness score (reported on change)")
    score_axis.axhline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    score_axis.set_ylim(0, 100)
    score_axis.set_xlabel(f"seconds since {datetime.fromtimestamp(origin):%H:%M:%S}")
    score_axis.set_ylabel("readiness score")
    if cutover is not None:
        score_axis.axvspan(cutover[0] - origin, max(cutover[1], cutover[0] + 0.3) - origin,
                           color="tab:green", alpha=0.3, label="cutover")
    score_axis.axvline(onset_at - origin, color="tab:gray", linestyle="-.",
                       label="incident starts (replayed trace)")
    score_axis.axvline(failure_at - origin, color="black", linestyle=":",
                       label="primary fails (end of trace)")
    lag_axis = score_axis.twinx()
    if lag:
        lag_axis.plot([t - origin for t, _ in lag], [v / 1024 for _, v in lag], ".",
                      color="tab:orange", markersize=3, label="replication lag (KiB)")
    lag_axis.set_ylabel("replication lag, KiB")
    handles = [*score_axis.get_legend_handles_labels()[0],
               *lag_axis.get_legend_handles_labels()[0]]
    score_axis.legend(handles=handles, loc="upper left", fontsize=8)
    score_axis.set_title("ShadowShift demo: predicted cutover before the primary fails")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
