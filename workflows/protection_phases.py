"""The phases of a protection that run activities: provisioning, cutting over, unprotecting.

A mixin of ``InstanceProtectionWorkflow`` (which supplies the state, the log and the request
builder), so the workflow module keeps only the loop, the messages and the status. Workflow
code: deterministic, activities by reference, no I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from contracts.agent_tasks import AgentHello, AgentTask, PrimarySource
from contracts.cutover import CutoverInput, cutover_workflow_id
from contracts.errors import INVALID_REQUEST, NON_RETRYABLE_TYPES
from contracts.protection import PREDICTION, CutoverRequest, LastCutover, ProtectionState
from contracts.shadow import (
    HostTasksRequest,
    InspectRequest,
    NodeFacts,
    PlatformRequest,
    ProvisionResult,
    ShadowActivities,
    WaitForSyncRequest,
)
from contracts.spec_hosts import HostPlacement, HostsSection, Role
from contracts.version import VERSION
from workflows.agent_tasks import inspect as inspect_on_host
from workflows.agent_tasks import run_agent_task
from workflows.cutover import CutoverWorkflow
from workflows.retraining_hooks import cutover_record, record_outcome, refused_record

ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)
"""Retries for the protection's activities: what retrying cannot fix fails at once."""
MAX_AGENT_ROUNDS = 4
"""Provisioning rounds on a platform with agents (prepare, copy on the host, finish: three
suffice; one more absorbs a copy redone after a crash)."""
LONG_HEARTBEAT = timedelta(minutes=2)
"""Heartbeat timeout of the shadow's long activities (they beat every few seconds)."""


@dataclass(frozen=True)
class HostRoles:
    """A spec's hosts as the roles stand (:meth:`ProtectionPhases._host_roles`)."""

    hosts: HostsSection
    serving: HostPlacement
    """The serving node's host."""
    standby_role: Role
    """The section's placement that holds the standby."""
    source: PrimarySource
    """What the standby streams from (the serving node, as the replication role)."""


class ProtectionPhases:
    """Provision → sync, cut over (then recover), unprotect."""

    if TYPE_CHECKING:  # supplied by InstanceProtectionWorkflow and RecoveryPhase

        @property
        def _state(self) -> ProtectionState: ...

        def _set_phase(self, phase: str) -> None: ...

        def _note(self, sentence: str) -> None: ...

        def _request(self) -> PlatformRequest: ...

        def _publish(self) -> None: ...

        async def _recover(self) -> None: ...

    async def _provision(self) -> None:
        """Check the primary can rejoin later, then create the shadow and wait for sync."""
        state = self._state
        self._set_phase("provisioning")
        primary = state.serving_node or state.spec.instance_id
        await self._greet_agents()
        facts = await self._inspect(primary)
        if facts is not None and facts.rewindable is False:
            self._note(f"Preflight: {facts.advice}. Until then a former primary is re-seeded by "
                       "a full copy after a cutover.")
        await self._provision_shadow()
        self._set_phase("syncing")
        await self._wait_for_sync()
        self._set_phase("protected")
        self._note(f"Shadow of {state.spec.instance_id} is in sync. Protected.")

    async def _greet_agents(self) -> None:
        """A spec that names hosts: both hosts' agents must answer, and run this version,
        before anything is created (``shadowshift protect`` checks this as well; a
        protection started with the plain ``temporal`` CLI does not pass through it). The
        standby's host's agent also logs in to the primary for replication as its copy
        will (TLS, the password from its passfile), so a refusal comes before anything exists.

        Raises:
            ApplicationError: ``AgentDown`` or ``AgentVersionMismatch``, naming the host, or
                ``InvalidRequest`` naming what the standby's agent was refused.
        """
        roles = self._host_roles()
        if roles is None:
            return
        standby = roles.hosts.placement(roles.standby_role)
        await run_agent_task(AgentTask(roles.serving.host, hello=AgentHello(VERSION)))
        await run_agent_task(AgentTask(standby.host, hello=AgentHello(VERSION, roles.source)))

    def _host_roles(self) -> HostRoles | None:
        """Where the serving node and the standby are now (``None``: the spec names no
        hosts): the original primary's placement serves until an odd number of cutovers."""
        spec = self._state.spec
        if spec.hosts is None:
            return None
        original = self._serving() == spec.instance_id
        serving = spec.hosts.primary if original else spec.hosts.shadow
        source = PrimarySource(serving.address,
                               spec.primary_port if original else spec.shadow_port,
                               spec.replication_user)
        return HostRoles(spec.hosts, serving, "shadow" if original else "primary", source)

    async def _provision_shadow(self) -> None:
        """Provision; on a platform with agents, run each host-local step the platform hands
        back (the copy on the shadow's host) and provision again until it converges. A copy
        the platform marks ``copy_alongside`` runs at the same time as the next call (the
        infrastructure is built while the data is copied); if the copy fails, that call is
        cancelled (it would only wait for a stream that never comes)."""
        state = self._state
        request = self._request()
        for _ in range(MAX_AGENT_ROUNDS):
            result = await self._provision_call(request)
            state.capabilities = result.capabilities
            if result.agent_task is None:
                return
            if not result.copy_alongside:
                await run_agent_task(result.agent_task)
                continue
            request = dataclasses.replace(request, copy_alongside=True)
            build = asyncio.ensure_future(self._provision_call(request))
            try:
                await run_agent_task(result.agent_task)
            except BaseException:
                build.cancel()
                raise
            result = await build
            state.capabilities = result.capabilities
            if result.agent_task is None:
                return
        raise ApplicationError(
            f"provisioning the shadow of {self._serving()} did not converge after "
            f"{MAX_AGENT_ROUNDS} host-local steps", type=INVALID_REQUEST, non_retryable=True)

    async def _provision_call(self, request: PlatformRequest) -> ProvisionResult:
        return await workflow.execute_activity_method(
            ShadowActivities.provision_shadow, request,
            start_to_close_timeout=timedelta(minutes=60), heartbeat_timeout=LONG_HEARTBEAT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"provision the shadow of {self._serving()}"
                    + (" while its host's agent copies it" if request.copy_alongside else ""),
        )

    async def _run_host_tasks(self, purpose: str, node: str) -> None:
        """On a platform with agents, the host-local work before the control-side step of
        ``purpose`` (nothing elsewhere, and no activity is scheduled)."""
        if not self._state.capabilities.agents:
            return
        tasks = await workflow.execute_activity_method(
            ShadowActivities.host_tasks, HostTasksRequest(self._request(), purpose, node),
            start_to_close_timeout=timedelta(minutes=1), retry_policy=ACTIVITY_RETRY,
            summary=f"plan the host-local steps to {purpose} {node or 'the shadow'}",
        )
        for task in tasks:
            await run_agent_task(task)

    async def _wait_for_sync(self, *, restore_relaxed: bool = False) -> None:
        state = self._state
        state.replication = await workflow.execute_activity_method(
            ShadowActivities.wait_for_sync,
            WaitForSyncRequest(self._request(), restore_relaxed=restore_relaxed),
            start_to_close_timeout=timedelta(hours=6), heartbeat_timeout=LONG_HEARTBEAT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"wait until the shadow of {self._serving()} is in sync (tier "
                    f"{state.spec.tier})",
        )
        state.shadow_healthy = True

    async def _destroy_shadow(self) -> None:
        """Remove the standby side (router entry, standby, data directory, slot)."""
        await self._run_host_tasks("destroy", "")
        await workflow.execute_activity_method(
            ShadowActivities.destroy_shadow, self._request(),
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=LONG_HEARTBEAT,
            retry_policy=ACTIVITY_RETRY, summary=f"destroy the shadow of {self._serving()}",
        )
        self._state.shadow_healthy = False

    async def _inspect(self, node: str) -> NodeFacts | None:
        """A node's data directory and rejoin readiness (``None`` if it could not be asked).

        The original primary's home is remembered while it answers: once it is the standby,
        rewinding or retiring it needs it even when it is down."""
        state = self._state
        try:
            facts = await workflow.execute_activity_method(
                ShadowActivities.inspect_node, InspectRequest(self._request(), node),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=3,
                                         non_retryable_error_types=NON_RETRYABLE_TYPES),
                summary=f"inspect {node}",
            )
            if facts.agent_task is not None:  # the facts live on the node's host
                facts = await inspect_on_host(facts.agent_task)
        except (ActivityError, ApplicationError) as err:
            why = err.cause if isinstance(err, ActivityError) and err.cause else err
            self._note(f"Could not inspect {node}: {why}.")
            return None
        if facts.home and node == state.spec.instance_id and facts.home != state.original_home:
            state.original_home = facts.home
            self._publish()
        return facts

    async def _cut_over(self) -> None:
        """Run the cutover saga as a child workflow, record its outcome, then recover.

        A completed (or forward-recovered) cutover swaps the roles: the state records the new
        primary at once, so every later request (and the shadow stack) follows it, and the
        former primary is recovered as the new shadow.
        """
        state = self._state
        request = state.pending_cutover or CutoverRequest("policy decided to migrate")
        mode = "emergency" if request.emergency else "planned"
        self._set_phase("cutting_over")
        self._note(f"Cutting over ({request.trigger}): {request.reason}.")
        now = workflow.now().timestamp
        try:
            result = await workflow.execute_child_workflow(
                CutoverWorkflow.run,
                CutoverInput(self._request(), mode=mode, reason=request.reason,
                             trigger=request.trigger,
                             fence_lease_s=state.capabilities.fence_lease_s),
                id=cutover_workflow_id(state.spec.instance_id),
                static_summary=f"{mode} cutover of {state.spec.instance_id} "
                               f"({request.trigger}): {request.reason}",
            )
        except ChildWorkflowError as err:
            state.pending_cutover = None
            self._set_phase("protected")
            state.last_cutover = LastCutover(now(), request.trigger, request.reason, "refused",
                                             self._serving(), self._serving())
            self._note(f"Cutover failed and changed nothing: {err.cause or err}.")
            await record_outcome(refused_record(state, now(), request.reason))
            return
        state.pending_cutover = None
        state.last_cutover = LastCutover(now(), request.trigger, request.reason, result.outcome,
                                         result.former_primary, result.primary)
        if result.outcome == "compensated":
            self._set_phase("protected")
            self._note(f"Cutover compensated; traffic stays on {result.former_primary}.")
            await record_outcome(refused_record(state, now(), request.reason))
            return
        state.cutovers += 1
        state.last_cutover_at = now()
        state.shadow_healthy = False
        state.serving_node = result.primary
        state.sync_degraded = False  # that was the former primary's mode
        state.recovering = result.former_primary
        self._publish()  # the watcher follows the roles
        await record_outcome(cutover_record(state, request.reason,
                                            by_policy=request.trigger == PREDICTION))
        self._note(
            f"Traffic moved from {result.former_primary} to {result.primary} "
            f"({result.outcome}, critical path {result.critical_path_ms:.0f} ms). "
            f"Recovering {result.former_primary} as the new shadow."
        )
        await self._recover()

    async def _unprotect(self) -> None:
        """Destroy the shadow and end. Traffic never moves: the primary keeps serving, only the
        shadow goes away."""
        state = self._state
        self._set_phase("unprotecting")
        await self._destroy_shadow()
        self._set_phase("unprotected")
        self._note(f"Shadow of {state.spec.instance_id} destroyed. Protection ended.")
        await workflow.wait_condition(workflow.all_handlers_finished)

    def _serving(self) -> str:
        """The node that serves now."""
        return self._state.serving_node or self._state.spec.instance_id
