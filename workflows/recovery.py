"""The ``recovering`` phase: after a cutover the former primary becomes the new shadow.

Operational flow, without operator action:

1. inspect the former primary (its data directory and whether ``pg_rewind`` can work on it)
   while it still answers, so its folder is known even if it dies later;
2. while the protection is paused, wait (an operator may be looking at the former primary);
3. if it can be rewound, rejoin it: rewind, stream from the new primary (synchronously in
   tier 1), record the swapped roles in the shadow stack in place;
4. otherwise, or if rejoining fails for good, retire it through ``pulumi destroy`` and
   provision a fresh shadow of the new primary (a full copy into the same place);
5. wait until the shadow is inside its tier's bound, then ``protected`` again — and a
   cutover back is possible.

If even the fresh shadow cannot be made (a platform without the operation, a full disk),
the protection stays ``degraded`` with the reason in its log: no cutover is offered without
a healthy shadow. A mixin of ``InstanceProtectionWorkflow``; workflow code, deterministic.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from contracts.errors import NON_RETRYABLE_TYPES
from contracts.protection import ProtectionState
from contracts.shadow import NodeFacts, PlatformRequest, RecoverRequest, ShadowActivities
from workflows.protection_phases import ACTIVITY_RETRY
from workflows.retraining_hooks import (
    rejoined_evidence,
    report_outcome_evidence,
    retired_evidence,
)

RECOVERY_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
"""Rejoin and retire beat every few seconds from a thread, so 30 s of silence means the
worker died: the activity is retried on another one without a long wait."""
REJOIN_ATTEMPTS = 3
"""Tries of a rejoin that fails for a reason retrying might fix, before retiring instead."""


class RecoveryPhase:
    """Rejoin the former primary as the shadow, or retire it and provision a fresh one."""

    if TYPE_CHECKING:  # supplied by InstanceProtectionWorkflow and ProtectionPhases

        @property
        def _state(self) -> ProtectionState: ...

        def _set_phase(self, phase: str) -> None: ...

        def _note(self, sentence: str) -> None: ...

        def _request(self) -> PlatformRequest: ...

        async def _inspect(self, node: str) -> NodeFacts | None: ...

        async def _provision_shadow(self) -> None: ...

        async def _wait_for_sync(self) -> None: ...

        async def _run_host_tasks(self, purpose: str, node: str) -> None: ...

    async def _recover(self) -> None:
        """Re-shadow the instance; ends ``protected`` (or ``degraded`` with the reason)."""
        state = self._state
        former = state.recovering
        self._set_phase("recovering")
        facts = await self._inspect(former)
        if state.paused:
            self._note(f"Paused: the recovery of {former} waits for resume.")
            await workflow.wait_condition(lambda: not self._state.paused)
        request = RecoverRequest(self._request(), former)
        how, why = "retired", ""
        if facts is not None and facts.rewindable is False:
            self._note(f"{former} cannot be rewound ({facts.advice}). Retiring it.")
        else:
            how, why = await self._rejoin(request)
        try:
            if how == "retired":  # its last word before it goes
                await report_outcome_evidence(retired_evidence(
                    state, former, workflow.now().timestamp(), facts, why))
                await self._retire(request)
            await self._wait_for_sync()
        except (ActivityError, ApplicationError) as err:
            cause = err.cause if isinstance(err, ActivityError) and err.cause else err
            self._set_phase("degraded")
            self._note(f"No shadow for {state.spec.instance_id}: {cause}.")
            return
        if how == "rejoined":  # feedback loop: the former primary can be watched again
            await report_outcome_evidence(
                rejoined_evidence(state, former, workflow.now().timestamp()))
        state.recoveries = [*state.recoveries, how]
        state.recovering = ""
        self._set_phase("protected")
        self._note(f"{former} is the shadow of {state.serving_node} and in sync. Protected.")

    async def _rejoin(self, request: RecoverRequest) -> tuple[str, str]:
        """``("rejoined", "")``, or ``("retired", why)`` when the former primary cannot rejoin."""
        try:
            await self._run_host_tasks("rejoin", request.former)  # the rewind, on its host
            done = await workflow.execute_activity_method(
                ShadowActivities.rejoin_former_primary, request,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=RECOVERY_HEARTBEAT_TIMEOUT,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=2),
                    maximum_attempts=REJOIN_ATTEMPTS,
                    non_retryable_error_types=NON_RETRYABLE_TYPES,
                ),
                summary=f"rejoin {request.former} as the shadow of "
                        f"{request.instance.serving_node}",
            )
        except (ActivityError, ApplicationError) as err:
            why = err.cause if isinstance(err, ActivityError) and err.cause else err
            self._note(f"{request.former} cannot rejoin: {why}. Retiring it.")
            return "retired", str(why)
        self._note(f"{request.former} rejoined as the shadow ({done}).")
        return "rejoined", ""

    async def _retire(self, request: RecoverRequest) -> None:
        """Remove the former primary's side, then provision a fresh shadow."""
        await self._run_host_tasks("retire", request.former)
        await workflow.execute_activity_method(
            ShadowActivities.retire_former_primary, request,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=RECOVERY_HEARTBEAT_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"retire {request.former}",
        )
        self._note(f"{request.former} retired. Provisioning a fresh shadow.")
        await self._provision_shadow()
