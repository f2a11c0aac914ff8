"""The health check fails when Temporal goes away, not only when the worker process does."""

from __future__ import annotations

import asyncio

from temporalio.testing import WorkflowEnvironment

from infra.local.ports import free_port
from workers import health


async def test_temporal_problem_follows_the_frontend(temporal_env: WorkflowEnvironment) -> None:
    """The running dev server answers; a port where nothing listens is reported by address."""
    address = temporal_env.client.service_client.config.target_host
    namespace = temporal_env.client.namespace
    # The check runs its own event loop (it is a one-shot command), so give it a thread.
    assert await asyncio.to_thread(health.temporal_problem, address, namespace) is None
    gone = f"127.0.0.1:{free_port()}"
    problem = await asyncio.to_thread(health.temporal_problem, gone, namespace, 2.0)
    assert problem is not None and problem.startswith(f"Temporal at {gone} does not answer")
