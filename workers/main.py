"""``python -m workers.main``: run a ShadowShift worker until SIGTERM or SIGINT.

Exit codes: 0 after a clean shutdown, 2 for bad settings or an unreachable Temporal server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import sys

from opentelemetry import trace
from temporalio.client import Client

from models.predictor import ModelError
from workers.process_exit import exit_process
from workers.registry import new_worker
from workers.settings import Settings, SettingsError, load_settings
from workers.telemetry import build_runtime, build_tracer_provider, tracing_interceptor

log = logging.getLogger("shadowshift.worker")


class StartupError(Exception):
    """The worker cannot start; the message says what to change."""


async def connect(settings: Settings) -> Client:
    """Connect to Temporal with tracing, or raise :class:`StartupError` if unreachable."""
    provider = build_tracer_provider(settings)
    # Library spans (Pulumi operations, cutover steps) use the global provider.
    trace.set_tracer_provider(provider)
    try:
        return await asyncio.wait_for(
            Client.connect(
                settings.temporal_address,
                namespace=settings.namespace,
                interceptors=[tracing_interceptor(provider)],
                runtime=build_runtime(settings),
            ),
            timeout=15,
        )
    except (TimeoutError, RuntimeError, OSError) as err:
        raise StartupError(
            f"cannot reach Temporal at {settings.temporal_address} ({err}); "
            "start it or set SHADOWSHIFT_TEMPORAL_ADDRESS"
        ) from err


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Poll ``settings.task_queue`` until ``stop`` is set, then drain and return."""
    client = await connect(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        try:
            worker = new_worker(client, settings, pool)
        except ModelError as err:
            raise StartupError(f"the failure model cannot be loaded: {err}") from err
        log.info(
            "Worker polling %s on %s (namespace %s).",
            settings.task_queue,
            settings.temporal_address,
            settings.namespace,
        )
        async with worker:
            await stop.wait()
            log.info("Shutdown requested. Draining the worker.")
    log.info("Worker stopped.")


def main() -> int:
    """Entry point; returns the process exit code."""
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"shadowshift-worker: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    try:
        asyncio.run(serve())
    except StartupError as err:
        print(f"shadowshift-worker: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_process(main())
