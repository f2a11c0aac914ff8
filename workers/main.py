"""``python -m workers.main``: run a ShadowShift worker until SIGTERM or SIGINT.

Exit codes: 0 after a clean shutdown, 2 for bad settings or an unreachable Temporal server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import sys
from collections.abc import Callable

from opentelemetry import trace
from temporalio.client import Client

from contracts.watch import WatchFleetInput
from infra import observability
from infra.factory import Platforms
from models.predictor import ModelError
from workers.logging_config import configure_logging
from workers.payload_codec import announce, data_converter
from workers.process_exit import exit_process
from workers.protect import ensure_fleet_watcher
from workers.registry import build_activities, fleet_scorer, new_worker, platforms
from workers.schedules import ScheduleConfig, ensure_schedules
from workers.settings import Settings, SettingsError, load_settings
from workers.telemetry import Telemetry, start_telemetry
from workers.temporal_tls import announce as announce_tls
from workers.temporal_tls import tls_config, tls_problem

log = logging.getLogger("shadowshift.worker")


class StartupError(Exception):
    """The worker cannot start; the message says what to change."""


async def connect(settings: Settings, telemetry: Telemetry) -> Client:
    """Connect to Temporal with tracing, the payload codec and the TLS of ``settings``, or
    raise :class:`StartupError` if unreachable, refused, or the keys or certificates are
    unusable."""
    try:
        converter = data_converter(settings)
        tls = tls_config(settings)
    except SettingsError as err:
        raise StartupError(str(err)) from err
    try:
        client = await asyncio.wait_for(
            Client.connect(
                settings.temporal_address,
                namespace=settings.namespace,
                data_converter=converter,
                interceptors=[telemetry.interceptor()],
                runtime=telemetry.runtime,
                tls=tls,
            ),
            timeout=15,
        )
    except (TimeoutError, RuntimeError, OSError) as err:
        problem = tls_problem(err, settings, settings.temporal_address)
        raise StartupError(
            f"cannot connect to Temporal at {settings.temporal_address}: {problem}" if problem
            else f"cannot reach Temporal at {settings.temporal_address} ({err}); "
            "start it or set SHADOWSHIFT_TEMPORAL_ADDRESS"
        ) from err
    announce_tls(log, settings, settings.temporal_address)
    announce(log, converter)
    return client


def start_worker_telemetry(settings: Settings) -> Telemetry:
    """Exporters and endpoints from ``settings``; a port in use is a :class:`StartupError`."""
    try:
        telemetry = start_telemetry(settings)
    except (OSError, RuntimeError) as err:
        raise StartupError(
            f"cannot open the metrics endpoints ({err}); choose free ports with "
            "SHADOWSHIFT_PROMETHEUS_PORT / SHADOWSHIFT_TEMPORAL_METRICS_PORT"
        ) from err
    # Library spans (Pulumi operations) use the global provider.
    trace.set_tracer_provider(telemetry.tracer_provider)
    if settings.prometheus_port:
        log.info("ShadowShift metrics on :%d/metrics.", settings.prometheus_port)
    if settings.temporal_metrics_port:
        log.info("Temporal SDK metrics on :%d/metrics.", settings.temporal_metrics_port)
    if settings.otlp_endpoint:
        log.info("Sending traces over OTLP to %s.", settings.otlp_endpoint)
    return telemetry


async def run_worker(settings: Settings, stop: asyncio.Event,
                     served: Callable[[Settings], Platforms] = platforms) -> None:
    """Poll ``settings.task_queue`` until ``stop`` is set, then drain and return; ``served``
    builds the platforms the worker serves (the demo's worker adds its metric overlay)."""
    telemetry = start_worker_telemetry(settings)
    try:
        await _serve(settings, telemetry, stop, served)
    finally:
        telemetry.shutdown()


async def _serve(settings: Settings, telemetry: Telemetry, stop: asyncio.Event,
                 served: Callable[[Settings], Platforms]) -> None:
    client = await connect(settings, telemetry)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        try:
            scorer = fleet_scorer(settings)
            activities = build_activities(settings, client, served=served(settings),
                                          scorer=scorer)
            worker = new_worker(client, settings, pool, activities=activities)
        except ModelError as err:
            raise StartupError(f"the failure model cannot be loaded: {err}") from err
        # The feedback loop's schedules (outcome probes, retraining) exist once per task
        # queue; every worker start makes sure of it and leaves existing ones untouched.
        await ensure_schedules(client, settings.task_queue,
                               ScheduleConfig(prefix=settings.task_queue))
        if settings.watch_interval_s:
            # Without a watcher nothing scores the protections on this queue; joining by id
            # leaves a running one (and its interval) untouched.
            await ensure_fleet_watcher(client, task_queue=settings.task_queue,
                                       request=WatchFleetInput(
                                           sample_interval_s=settings.watch_interval_s,
                                           metrics_period_s=settings.aws_metrics_period_s))
        log.info(
            "Worker polling %s on %s (namespace %s).",
            settings.task_queue,
            settings.temporal_address,
            settings.namespace,
        )
        async with worker:
            observability.set_worker_running(True)
            await stop.wait()
            observability.set_worker_running(False)
            log.info("Shutdown requested. Draining the worker.")
        scorer.baselines.save()  # what the instances taught since the last periodic save
    log.info("Worker stopped.")


def main(served: Callable[[Settings], Platforms] = platforms) -> int:
    """Entry point; returns the process exit code."""
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"shadowshift-worker: {err}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop, served)

    try:
        asyncio.run(serve())
    except StartupError as err:
        print(f"shadowshift-worker: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_process(main())
