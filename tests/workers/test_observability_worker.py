"""A real worker run (PostgreSQL, HAProxy, Pulumi, Temporal) produces every metric an operator
charts, scraped over HTTP from the worker's two Prometheus endpoints, plus the cutover's step
spans and log lines that carry their trace ids."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import io
import logging
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts.cutover import PLANNED_STEPS, CutoverResult, cutover_workflow_id
from contracts.policy import FleetBudget, Policy
from contracts.protection import CutoverRequest
from contracts.watch import WatchFleetInput
from contracts.wire import DATA_CONVERTER
from infra import observability
from infra.local.ports import free_port
from models.predictor import DEFAULT_MODEL_PATH, Predictor
from tests.conftest import LocalService, with_spec, worker_env
from tests.workers.test_observability import sample_value, scrape
from workers.logging_config import LOG_FORMAT, TraceContextFilter
from workers.protect import ensure_fleet_watcher, start_protection
from workers.registry import new_worker
from workers.settings import REPO_ROOT, Settings
from workers.telemetry import start_telemetry
from workflows.protection import InstanceProtectionWorkflow


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await condition():
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"not {what} after {timeout_s:.0f} s") from None


async def test_worker_run_exports_metrics_spans_and_traced_logs(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Protect an instance, let the fleet watcher score it, cut over on request: afterwards
    the ShadowShift endpoint serves score, probability, lag, model version and the cutover
    (its blackout equal to the workflow's critical path), the SDK endpoint serves Temporal's
    own metrics for these workflows, each critical step has a span under the activity's span,
    and each step's log line carries that span's trace id."""
    settings = dataclasses.replace(
        settings, prometheus_port=free_port(), temporal_metrics_port=free_port()
    )
    spans = InMemorySpanExporter()
    telemetry = start_telemetry(settings, span_processors=[SimpleSpanProcessor(spans)],
                                prometheus_host="127.0.0.1")
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    step_logger = observability.log
    step_logger.addHandler(handler)
    previous_level = step_logger.level
    step_logger.setLevel(logging.INFO)
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        data_converter=DATA_CONVERTER,
        interceptors=[telemetry.interceptor()],
        runtime=telemetry.runtime,
    )
    spec = with_spec(local_service.request, policy=Policy(advisory=True)).spec
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=120,
                            budget=FleetBudget(advisory=True))
    try:
        with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
            async with new_worker(client, settings, pool, task_queue=task_queue):
                observability.set_worker_running(True)
                handle = await start_protection(client, spec, task_queue=task_queue)
                watcher = await ensure_fleet_watcher(client, task_queue=task_queue,
                                                     request=watch)
                try:
                    async def protected_and_scored() -> bool:
                        status = await handle.query(InstanceProtectionWorkflow.status)
                        return status.shadow_healthy and status.readiness_score is not None

                    await _until(protected_and_scored, 150, "protected and scored")
                    await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                                CutoverRequest("observability test"))

                    async def cut_over() -> bool:
                        status = await handle.query(InstanceProtectionWorkflow.status)
                        return status.cutovers >= 1

                    await _until(cut_over, 120, "cutover")
                    cutover = client.get_workflow_handle(
                        cutover_workflow_id(spec.instance_id), result_type=CutoverResult
                    )
                    result = await cutover.result()
                    ours = scrape(settings.prometheus_port)
                    sdk = scrape(settings.temporal_metrics_port)
                finally:
                    await watcher.terminate("test over")
                    await handle.terminate("test over")
    finally:
        observability.set_worker_running(False)
        step_logger.removeHandler(handler)
        step_logger.setLevel(previous_level)
        telemetry.shutdown()

    instance = spec.instance_id
    # The fleet watcher's verdicts and the lag it sampled.
    readiness = sample_value(ours, "shadowshift_readiness_score", instance=instance)
    probability = sample_value(ours, "shadowshift_failure_probability", instance=instance)
    assert readiness is not None and 0.0 <= readiness <= 100.0
    assert probability is not None and 0.0 <= probability <= 1.0
    lag = sample_value(ours, "shadowshift_replication_lag_bytes", instance=instance)
    assert lag is not None and lag >= 0
    model = Predictor.load(DEFAULT_MODEL_PATH).model_sha256[:12]
    assert sample_value(ours, "shadowshift_model_info", model_version=model) == 1
    assert sample_value(ours, "shadowshift_worker_running") == 1
    # The cutover, recorded once, with the workflow's own figures.
    labels = {"instance": instance, "mode": "planned", "outcome": result.outcome}
    assert result.outcome == "completed"
    assert sample_value(ours, "shadowshift_cutovers_total", **labels) == 1
    assert sample_value(ours, "shadowshift_cutover_blackout_seconds_count", **labels) == 1
    blackout = sample_value(ours, "shadowshift_cutover_blackout_seconds_sum", **labels)
    assert blackout is not None and abs(blackout - result.critical_path_ms / 1000) < 1e-6
    duration = sample_value(ours, "shadowshift_cutover_duration_seconds_sum", **labels)
    assert duration is not None and duration > blackout
    for step in PLANNED_STEPS:
        assert sample_value(ours, "shadowshift_cutover_step_duration_seconds_count",
                            instance=instance, step=step, result="ok") == 1, step
    # The Temporal SDK's own metrics for these very workflows and activities.
    sdk_names = {s.name for s in sdk}
    for name in observability.TEMPORAL_SDK_METRICS:
        assert name in sdk_names or f"{name}_count" in sdk_names, name
    assert sample_value(sdk, "temporal_workflow_completed_total", namespace="default",
                        task_queue=task_queue, workflow_type="CutoverWorkflow") == 1
    assert any(s.name == "temporal_activity_execution_latency_seconds_count"
               and s.labels.get("activity_type") == "switch_over" for s in sdk)
    # Step spans are children of the switch_over activity's span, in order.
    finished = spans.get_finished_spans()
    (activity_span,) = [s for s in finished if s.name == "RunActivity:switch_over"]
    steps = [s for s in finished if s.name.startswith("cutover.")]
    assert [s.name for s in steps] == [f"cutover.{step}" for step in PLANNED_STEPS]
    for span in steps:
        assert span.parent is not None
        assert span.parent.span_id == activity_span.context.span_id
        assert span.context.trace_id == activity_span.context.trace_id
    # Each step's log line carries its own span's ids.
    logged = lines.getvalue().splitlines()
    for span in steps:
        step = span.name.removeprefix("cutover.")
        (line,) = [x for x in logged if re.search(rf"Cutover step {step} of {instance} ", x)]
        assert f"trace_id={span.context.trace_id:032x}" in line
        assert f"span_id={span.context.span_id:016x}" in line


async def _health(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.health", cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, out.decode().strip()


async def test_health_command_follows_the_real_worker(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str
) -> None:
    """The image's health check (`python -m workers.health`) fails before the worker runs,
    passes while `python -m workers.main` polls, and fails again once it has stopped."""
    env = worker_env(
        settings,
        SHADOWSHIFT_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        SHADOWSHIFT_TASK_QUEUE=task_queue,
        SHADOWSHIFT_PROMETHEUS_PORT=str(free_port()),
    )
    code, said = await _health(env)
    assert code == 1 and "no metrics endpoint" in said
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.main", cwd=REPO_ROOT, env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async def healthy() -> bool:
            return (await _health(env))[0] == 0

        await _until(healthy, 90, "healthy")
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), timeout=60) == 0
        assert worker.stderr is not None
        log_text = (await worker.stderr.read()).decode()
        # The worker's own lines use the traced format.
        assert re.search(r"INFO shadowshift\.worker \[trace_id=- span_id=-\] Worker polling",
                         log_text), log_text[-2000:]
        assert f"ShadowShift metrics on :{env['SHADOWSHIFT_PROMETHEUS_PORT']}/metrics." in log_text
        code, said = await _health(env)
        assert code == 1 and "no metrics endpoint" in said
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


@pytest.mark.integration  # starts a server or our program
async def test_metrics_port_in_use_is_a_one_line_startup_error(settings: Settings) -> None:
    """A taken metrics port stops the worker with exit code 2 and names the variable."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        env = worker_env(settings, SHADOWSHIFT_PROMETHEUS_PORT=str(taken.getsockname()[1]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.main", cwd=REPO_ROOT, env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    message = err.decode().strip()
    assert message.count("\n") == 0 and "SHADOWSHIFT_PROMETHEUS_PORT" in message, message
