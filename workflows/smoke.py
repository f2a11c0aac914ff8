"""``SmokeWorkflow``: the walking skeleton that touches every real component once.

Flow: ``pulumi up`` a one-file stack → score a small LightGBM model → optionally wait on a
durable timer → ``pulumi destroy`` the stack (also when anything in between fails).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.smoke import (
        SmokeActivities,
        SmokeModelInput,
        SmokeStackInput,
        SmokeStackResult,
    )

_PULUMI_RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=["InvalidRequest"])


@dataclass
class SmokeInput:
    """What the skeleton should create and how long to hold it."""

    stack_name: str
    """Pulumi stack to create and destroy."""
    path: str
    """File the stack manages."""
    content: str = "hello from shadowshift\n"
    """Content of that file."""
    hold_seconds: float = 0.0
    """How long to keep the stack before destroying it (a durable timer)."""
    destroy: bool = True
    """Destroy the stack at the end."""


@dataclass
class SmokeResult:
    """What every component reported."""

    stack: SmokeStackResult
    """Outputs of ``pulumi up``."""
    probability: float
    """LightGBM's probability for the probe point."""
    destroyed: bool
    """Whether ``pulumi destroy`` removed the stack."""


@workflow.defn
class SmokeWorkflow:
    """Create a stack, score a model, hold, destroy."""

    @workflow.run
    async def run(self, request: SmokeInput) -> SmokeResult:
        """Run the skeleton; the stack is destroyed even if a later step fails."""
        stack_input = SmokeStackInput(request.stack_name, request.path, request.content)
        stack = await workflow.execute_activity_method(
            SmokeActivities.apply_smoke_stack,
            stack_input,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=_PULUMI_RETRY,
        )
        destroyed = False
        try:
            probability = await workflow.execute_activity_method(
                SmokeActivities.score_smoke_model,
                SmokeModelInput(),
                start_to_close_timeout=timedelta(minutes=2),
            )
            if request.hold_seconds > 0:
                workflow.logger.info(
                    "Holding stack %s for %ss.", request.stack_name, request.hold_seconds
                )
                await workflow.sleep(timedelta(seconds=request.hold_seconds))
        finally:
            if request.destroy:
                destroyed = await workflow.execute_activity_method(
                    SmokeActivities.destroy_smoke_stack,
                    stack_input,
                    start_to_close_timeout=timedelta(minutes=5),
                    heartbeat_timeout=timedelta(seconds=60),
                    retry_policy=_PULUMI_RETRY,
                )
        return SmokeResult(stack=stack, probability=probability, destroyed=destroyed)
