"""The walking skeleton on real Temporal dev servers, with Pulumi, LightGBM and OpenTelemetry."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import uuid
from datetime import timedelta
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from workers.registry import new_worker
from workers.settings import Settings
from workers.telemetry import build_tracer_provider, tracing_interceptor
from workflows.smoke import SmokeInput, SmokeResult, SmokeWorkflow


async def _heartbeat_details(handle: WorkflowHandle, done: asyncio.Event) -> list[str]:
    """Collect the heartbeat details the server shows for pending activities until ``done``."""
    seen: list[str] = []
    while not done.is_set():
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            for payload in pending.heartbeat_details.payloads:
                seen.append(payload.data.decode())
        await asyncio.sleep(0.05)
    return seen


async def test_skeleton_runs_every_component(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    """Pulumi creates a real file from inside an activity that heartbeats Pulumi's output,
    LightGBM scores, destroy removes the file, and spans of both reach an exporter."""
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(settings, [SimpleSpanProcessor(exporter)])
    global_provider = trace.get_tracer_provider()
    if isinstance(global_provider, TracerProvider):  # set once per process, by the first test
        global_provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        trace.set_tracer_provider(provider)
    client = Client(
        **{**temporal_env.client.config(), "interceptors": [tracing_interceptor(provider)]}
    )
    target = tmp_path / "skeleton.txt"
    request = SmokeInput(stack_name="skeleton", path=str(target), destroy=False)

    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                SmokeWorkflow.run, request, id=f"smoke-{uuid.uuid4()}", task_queue=task_queue
            )
            done = asyncio.Event()
            watcher = asyncio.create_task(_heartbeat_details(handle, done))
            kept: SmokeResult = await handle.result()
            done.set()
            heartbeats = await watcher

            assert target.read_text() == request.content
            assert kept.stack.sha256 == hashlib.sha256(request.content.encode()).hexdigest()
            assert kept.stack.changes.get("create") == 2
            assert kept.destroyed is False
            assert 0.5 < kept.probability <= 1.0  # (3, 3) sits deep in the positive class
            # Pulumi's own first output line, relayed by the output-callback heartbeat.
            assert '"Updating (skeleton):"' in heartbeats, heartbeats

            request.destroy = True
            removed: SmokeResult = await client.execute_workflow(
                SmokeWorkflow.run, request, id=f"smoke-{uuid.uuid4()}", task_queue=task_queue
            )
    assert removed.stack.changes == {"same": 2}
    assert removed.destroyed is True
    assert not target.exists()

    names = {span.name for span in exporter.get_finished_spans()}
    assert {
        "StartWorkflow:SmokeWorkflow",
        "RunWorkflow:SmokeWorkflow",
        "StartActivity:apply_smoke_stack",
        "RunActivity:apply_smoke_stack",
        "RunActivity:score_smoke_model",
    } <= names, names


async def test_long_timer_is_skipped(
    time_skipping_env: WorkflowEnvironment, settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    """On the time-skipping server a six-hour durable timer fires without six hours passing."""
    client = time_skipping_env.client
    target = tmp_path / "held.txt"
    request = SmokeInput(
        stack_name="held", path=str(target), hold_seconds=timedelta(hours=6).total_seconds()
    )
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                SmokeWorkflow.run, request, id=f"held-{uuid.uuid4()}", task_queue=task_queue
            )
            result = await asyncio.wait_for(handle.result(), timeout=300)
    assert result.destroyed and not target.exists()
    fired = [
        event
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_TIMER_FIRED
    ]
    assert len(fired) == 1
