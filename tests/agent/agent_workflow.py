"""A test-only workflow that routes one ``AgentActivities`` call to a host's queue, as the
platform's workflows will (by method reference, on ``host_task_queue(host)``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from contracts.agent import (
    AGENT_HEARTBEAT_S,
    AGENT_PICKUP_S,
    VERSION_MISMATCH,
    AgentActivities,
    AgentCall,
    AgentHello,
    EnsurePrimaryRequest,
    RewindRequest,
    SeedRequest,
    host_task_queue,
)
from contracts.errors import NON_RETRYABLE_TYPES


@dataclass
class AgentStep:
    """One agent activity to run on ``host``'s queue: ``method`` names it, the field of its
    request type carries the request."""

    host: str
    method: str
    hello: AgentHello | None = None
    ensure: EnsurePrimaryRequest | None = None
    seed: SeedRequest | None = None
    rewind: RewindRequest | None = None
    call: AgentCall | None = None
    schedule_to_start_s: float = AGENT_PICKUP_S
    start_to_close_s: float = 180.0
    heartbeat_s: float = AGENT_HEARTBEAT_S
    max_attempts: int = 5


@workflow.defn
class AgentStepWorkflow:
    """Runs one :class:`AgentStep` and returns the activity's result."""

    @workflow.run
    async def run(self, step: AgentStep) -> Any:
        """Route the call; its failure fails the workflow."""
        calls = {
            "hello": (AgentActivities.hello, step.hello),
            "ensure_primary": (AgentActivities.ensure_primary, step.ensure),
            "seed_standby": (AgentActivities.seed_standby, step.seed),
            "rewind_as_standby": (AgentActivities.rewind_as_standby, step.rewind),
            "inspect_server": (AgentActivities.inspect_server, step.call),
            "start_server": (AgentActivities.start_server, step.call),
            "stop_server": (AgentActivities.stop_server, step.call),
            "fence_server": (AgentActivities.fence_server, step.call),
            "destroy_server": (AgentActivities.destroy_server, step.call),
            "probe_local": (AgentActivities.probe_local, step.call),
        }
        method, request = calls[step.method]
        return await workflow.execute_activity_method(
            method, request,  # type: ignore[arg-type]
            task_queue=host_task_queue(step.host),
            schedule_to_start_timeout=timedelta(seconds=step.schedule_to_start_s),
            start_to_close_timeout=timedelta(seconds=step.start_to_close_s),
            heartbeat_timeout=timedelta(seconds=step.heartbeat_s),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200), backoff_coefficient=1.5,
                maximum_attempts=step.max_attempts,
                non_retryable_error_types=[VERSION_MISMATCH, *NON_RETRYABLE_TYPES]),
            summary=f"{step.method} on {step.host}",
        )
