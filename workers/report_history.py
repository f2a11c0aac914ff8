"""What a protection's report shows, read from its Temporal event history.

The workflow keeps only its latest values (its state must stay small), but its history holds
every message and activity result: each ``report_risk`` signal (score, probability and
decision as the fleet watcher sent them), every ``set_policy`` update (the threshold over
time), each activity result that carries a replication status (lag samples), external events,
and each cutover child workflow, whose own history times every step. Runs linked by
continue-as-new are followed back so the report covers the protection's whole life (up to
``max_runs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from contracts.cutover import CutoverResult
from contracts.policy import PolicyChange
from contracts.protection import ExternalEvent, ProtectionApi, RiskReport
from contracts.spec import ProtectionSpec
from workflows.cutover import CutoverWorkflow

SET_POLICY = "set_policy"
"""The ``set_policy`` update's name (``ProtectionApi.set_policy``), as histories record it."""


@dataclass
class RiskPoint:
    """One ``report_risk`` signal."""

    at: float
    """When it was scored (epoch seconds, from the report)."""
    readiness_score: float
    failure_probability: float
    decision: str


@dataclass
class ThresholdChange:
    """The policy threshold in force from ``at`` on."""

    at: float
    threshold: float


@dataclass
class LagPoint:
    """A replication status an activity returned to the workflow."""

    at: float
    """When the activity completed (history event time)."""
    lag_bytes: int
    activity: str


@dataclass
class EventMark:
    """A ``report_event`` signal (maintenance, hardware warning...)."""

    at: float
    kind: str
    severity: float


@dataclass
class StepSpan:
    """One activity of a cutover, relative to the cutover's start."""

    name: str
    start_s: float
    end_s: float
    attempts: int
    completed: bool


@dataclass
class CutoverTimeline:
    """One cutover child workflow."""

    workflow_id: str
    run_id: str
    started_at: float
    outcome: str
    """``completed``, ``compensated``, ``promoted_unverified``, or ``failed`` / ``running``."""
    critical_path_ms: float | None
    step_ms: dict[str, float]
    """Per-step durations measured inside the activities (from the cutover's result)."""
    activities: list[StepSpan]
    """Each activity's span as the history timed it."""


@dataclass
class ProtectionHistory:
    """Everything the per-instance report draws."""

    instance_id: str
    workflow_id: str
    run_ids: list[str]
    """Runs covered, oldest first."""
    risk: list[RiskPoint] = field(default_factory=list)
    thresholds: list[ThresholdChange] = field(default_factory=list)
    lag: list[LagPoint] = field(default_factory=list)
    events: list[EventMark] = field(default_factory=list)
    cutovers: list[CutoverTimeline] = field(default_factory=list)
    ended_at: float = 0.0
    """Time of the last event read (the plots' right edge)."""
    events_read: list[int] = field(default_factory=list)
    """Events read from each run (same order as ``run_ids``): the history may grow after."""


def _time(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


async def _events(client: Client, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    return list((await handle.fetch_history()).events)


async def read_history(
    client: Client, instance_id: str, workflow_id: str, *, max_runs: int = 20
) -> ProtectionHistory:
    """Collect the report's series from the protection's runs (newest ``max_runs``)."""
    runs: list[tuple[str, list[HistoryEvent]]] = []
    run_id = (await client.get_workflow_handle(workflow_id).describe()).run_id
    while len(runs) < max_runs:
        events = await _events(client, workflow_id, run_id)
        started = events[0].workflow_execution_started_event_attributes
        runs.insert(0, (run_id, events))
        if not started.continued_execution_run_id:
            break
        run_id = started.continued_execution_run_id
    history = ProtectionHistory(instance_id, workflow_id, [r for r, _ in runs])
    history.events_read = [len(events) for _, events in runs]
    for _, events in runs:
        await _read_run(client, events, history)
    return history


async def _decode(client: Client, payloads: Any, kind: type | None) -> Any:
    """The first payload as ``kind`` (``None``: plain JSON values); ``None`` when empty."""
    if not payloads:
        return None
    values = await client.data_converter.decode(list(payloads)[:1], [kind] if kind else None)
    return values[0]


async def _read_run(client: Client, events: list[HistoryEvent], out: ProtectionHistory) -> None:
    scheduled: dict[int, str] = {}
    for event in events:
        at = _time(event)
        out.ended_at = max(out.ended_at, at)
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attrs = event.workflow_execution_started_event_attributes
            # The first run gets the spec; a continued run the spec and its state.
            spec = await _decode(client, attrs.input.payloads, ProtectionSpec)
            _threshold(out, at, spec.policy.threshold)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signal = event.workflow_execution_signaled_event_attributes
            if signal.signal_name == ProtectionApi.report_risk.__name__:
                risk = await _decode(client, signal.input.payloads, RiskReport)
                out.risk.append(RiskPoint(risk.at, risk.readiness_score,
                                          risk.failure_probability, risk.decision))
            elif signal.signal_name == ProtectionApi.report_event.__name__:
                alert = await _decode(client, signal.input.payloads, ExternalEvent)
                out.events.append(EventMark(at, alert.kind, alert.severity))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.name == SET_POLICY:
                change = await _decode(client, request.input.args.payloads, PolicyChange)
                if change.threshold is not None:  # the other fields leave it as it was
                    _threshold(out, at, change.threshold)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs_s = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs_s.activity_type.name
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            result = await _decode(client, done.result.payloads, None)
            if isinstance(result, dict) and isinstance(result.get("lag_bytes"), int):
                name = scheduled.get(done.scheduled_event_id, "?")
                out.lag.append(LagPoint(at, result["lag_bytes"], name))
        elif kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            child_started = event.child_workflow_execution_started_event_attributes
            if child_started.workflow_type.name == CutoverWorkflow.__name__:
                child = child_started.workflow_execution
                out.cutovers.append(await read_cutover(client, child.workflow_id, child.run_id))


def _threshold(out: ProtectionHistory, at: float, threshold: float) -> None:
    if not out.thresholds or out.thresholds[-1].threshold != threshold:
        out.thresholds.append(ThresholdChange(at, threshold))


async def read_cutover(client: Client, workflow_id: str, run_id: str) -> CutoverTimeline:
    """One cutover's activities as timed by its history, and its result."""
    events = await _events(client, workflow_id, run_id)
    origin = _time(events[0])
    spans: dict[int, StepSpan] = {}
    timeline = CutoverTimeline(workflow_id, run_id, origin, "running", None, {}, [])
    for event in events:
        kind, at = event.event_type, _time(event) - origin
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            spans[event.event_id] = StepSpan(name, at, at, 0, False)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            span = spans[started.scheduled_event_id]
            span.start_s, span.attempts = at, started.attempt
        elif kind in _ACTIVITY_CLOSED:
            span = spans[_scheduled_id(event)]
            span.end_s = at
            span.completed = kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            payloads = event.workflow_execution_completed_event_attributes.result.payloads
            result = await _decode(client, payloads, CutoverResult)
            timeline.outcome = result.outcome
            timeline.critical_path_ms = result.critical_path_ms
            timeline.step_ms = dict(result.step_ms)
        elif kind in _RUN_FAILED:
            timeline.outcome = "failed"
    timeline.activities = list(spans.values())
    return timeline


_ACTIVITY_CLOSED = (
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
)
_RUN_FAILED = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
)


def _scheduled_id(event: HistoryEvent) -> int:
    for name in ("activity_task_completed_event_attributes",
                 "activity_task_failed_event_attributes",
                 "activity_task_timed_out_event_attributes",
                 "activity_task_canceled_event_attributes"):
        if event.HasField(name):
            scheduled_id: int = getattr(event, name).scheduled_event_id
            return scheduled_id
    raise ValueError(f"event {event.event_id} closes no activity")
