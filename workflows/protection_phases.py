"""The phases of a protection that run activities: provisioning, cutting over, unprotecting.

A mixin of ``InstanceProtectionWorkflow`` (which supplies the state, the log and the request
builder), so the workflow module keeps only the loop, the messages and the status. Workflow
code: deterministic, activities by name, no I/O.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.errors import NON_RETRYABLE_TYPES
    from activities.recovery import InspectRequest, NodeFacts
    from activities.shadow import ShadowRequest, WaitForSyncRequest
    from infra.platform import ReplicationStatus
    from workflows.cutover import (
        CutoverInput,
        CutoverResult,
        CutoverWorkflow,
        cutover_workflow_id,
    )
    from workflows.protection_state import CutoverRequest, ProtectionState
    from workflows.retraining_hooks import cutover_record, record_outcome, refused_record

ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)
"""Retries for the protection's activities: what retrying cannot fix fails at once."""


class ProtectionPhases:
    """Provision → sync, cut over (then recover), unprotect."""

    if TYPE_CHECKING:  # supplied by InstanceProtectionWorkflow and RecoveryPhase

        @property
        def _state(self) -> ProtectionState: ...

        def _set_phase(self, phase: str) -> None: ...

        def _note(self, sentence: str) -> None: ...

        def _shadow_request(self) -> ShadowRequest: ...

        async def _recover(self) -> None: ...

    async def _provision(self) -> None:
        """Check the primary can be rewound later, then create the shadow and wait for sync."""
        state = self._state
        self._set_phase("provisioning")
        if workflow.patched("rewind-preflight"):
            primary = state.serving_node or state.spec.instance_id
            facts = await self._inspect(primary)
            if facts is not None and facts.rewindable is False:
                self._note(
                    f"Preflight: {facts.advice}. Until then a former primary is re-seeded by a "
                    "full copy after a cutover."
                )
        await self._provision_shadow()
        self._set_phase("syncing")
        await self._wait_for_sync()
        self._set_phase("protected")
        self._note(f"Shadow of {state.spec.instance_id} is in sync. Protected.")

    async def _shadow_activity(
        self, name: str, arg: object, timeout: timedelta, result_type: type | None = None
    ) -> Any:
        """One of the shadow's long activities: heartbeating, retried by ``ACTIVITY_RETRY``."""
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=timeout,
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=ACTIVITY_RETRY,
        )

    async def _provision_shadow(self) -> None:
        await self._shadow_activity(
            "provision_shadow", self._shadow_request(), timedelta(minutes=60)
        )

    async def _wait_for_sync(self) -> None:
        state = self._state
        state.replication = await self._shadow_activity(
            "wait_for_sync", WaitForSyncRequest(self._shadow_request()), timedelta(hours=6),
            ReplicationStatus,
        )
        state.shadow_healthy = True

    async def _destroy_shadow(self) -> None:
        """``pulumi destroy`` of the shadow (router entry, standby, data directory, slot)."""
        await self._shadow_activity("destroy_shadow", self._shadow_request(), timedelta(minutes=30))
        self._state.shadow_healthy = False

    async def _inspect(self, node: str) -> NodeFacts | None:
        """A node's data directory and rewind readiness (``None`` if it could not be asked).

        The original primary's folder is remembered while it answers: once it is the
        standby, rewinding or retiring it needs it even when it is down."""
        state = self._state
        try:
            facts: NodeFacts = await workflow.execute_activity(
                "inspect_node",
                InspectRequest(self._shadow_request(), node),
                result_type=NodeFacts,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(
                    maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_TYPES
                ),
            )
        except ActivityError as err:
            self._note(f"Could not inspect {node}: {err.cause or err}.")
            return None
        if facts.home and node == state.spec.instance_id:
            state.original_home = facts.home
        return facts

    async def _cut_over(self) -> None:
        """Run the cutover saga as a child workflow, record its outcome, then recover.

        A completed (or forward-recovered) cutover swaps the roles: the state records the new
        primary at once, so every later request (and the shadow stack) follows it, and the
        former primary is recovered as the new shadow.
        """
        state = self._state
        request = state.pending_cutover or CutoverRequest("policy decided to migrate")
        self._set_phase("cutting_over")
        self._note(f"Cutting over: {request.reason}.")
        try:
            result: CutoverResult = await workflow.execute_child_workflow(
                CutoverWorkflow.run,
                CutoverInput(self._shadow_request(),
                             mode="emergency" if request.emergency else "planned",
                             reason=request.reason),
                id=cutover_workflow_id(state.spec.instance_id),
            )
        except ChildWorkflowError as err:
            state.pending_cutover = None
            self._set_phase("protected")
            self._note(f"Cutover failed and changed nothing: {err.cause or err}.")
            await record_outcome(refused_record(state.spec, state.serving_node,
                                                workflow.now().timestamp(), request.reason,
                                                state.latest_risk))
            return
        state.pending_cutover = None
        if result.outcome == "compensated":
            self._set_phase("protected")
            self._note(f"Cutover compensated; traffic stays on {result.former_primary}.")
            await record_outcome(refused_record(state.spec, state.serving_node,
                                                workflow.now().timestamp(), request.reason,
                                                state.latest_risk))
            return
        state.cutovers += 1
        state.last_cutover_at = workflow.now().timestamp()
        state.shadow_healthy = False
        state.serving_node = result.primary
        state.sync_degraded = False  # that was the former primary's mode
        state.recovering = result.former_primary
        await record_outcome(cutover_record(state.spec, state.cutovers, state.last_cutover_at,
                                            request.reason, state.latest_risk,
                                            by_policy=request.by_policy))
        self._note(
            f"Traffic moved from {result.former_primary} to {result.primary} "
            f"({result.outcome}, critical path {result.critical_path_ms:.0f} ms). "
            f"Recovering {result.former_primary} as the new shadow."
        )
        await self._recover()

    async def _unprotect(self) -> None:
        """Destroy the shadow through Pulumi (router entry, standby, data, slot) and end.

        Traffic never moves: the primary keeps serving, only the shadow goes away."""
        state = self._state
        self._set_phase("unprotecting")
        await self._destroy_shadow()
        self._set_phase("unprotected")
        self._note(f"Shadow of {state.spec.instance_id} destroyed. Protection ended.")
        await workflow.wait_condition(workflow.all_handlers_finished)
