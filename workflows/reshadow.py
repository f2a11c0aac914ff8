"""A shadow lost for good: made anew on a spare host, or ``degraded`` until it returns.

The fleet watcher reports a shadow that has been neither reachable nor streaming to its
primary for ``policy.reshadow_after_s`` (``report_shadow_lost``). A reboot or a restart is
over long before that; what is left is a host that is gone (hardware, a deleted VM) or cut off
for good, and a primary without a shadow has no failover to offer. So, as CloudNativePG
recreates a replica whose node is gone and as an operator with a spare machine would:

1. the first spare host of ``hosts.spares`` that was never lost must have an agent that
   answers, runs this version and can log in to the primary for replication (TLS, its
   passfile) as its copy will;
2. the standby node's placement moves there (the spec, and so the memo the watcher reads,
   follow); its replication slot is a new one (``HostPlacement.moved``), so the lost host,
   if it ever comes back, has no slot to stream from and can never pass for tier 1's
   synchronous standby; then the shadow is provisioned there as on the first day (a slot,
   the copy by the spare's agent alongside the stack's ``up`` that moves the router entry
   and applies the tier's settings once the standby streams);
3. once it is in sync: ``protected`` again (tier 1's commits wait for the new standby).

Without a spare, or when the spare cannot be made, the protection is ``degraded`` with the
reason in its log and waits until the shadow is back in sync (the lost host returned: its
agent restarts the standby), unless ``unprotect`` ends it first. What the lost host leaves
behind (its stale standby and data) cannot be removed while it is gone; ``docs/operations.md``
says how to clear it when it returns. A mixin of ``InstanceProtectionWorkflow``; workflow
code, deterministic.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from contracts.agent_tasks import AgentHello, AgentTask
from contracts.protection import ProtectionState, ShadowLoss, standby_node
from contracts.version import VERSION
from workflows.agent_tasks import run_agent_task
from workflows.protection_phases import HostRoles


class ReshadowPhase:
    """Move a lost shadow to a spare host."""

    if TYPE_CHECKING:  # supplied by InstanceProtectionWorkflow and ProtectionPhases

        @property
        def _state(self) -> ProtectionState: ...

        def _set_phase(self, phase: str) -> None: ...

        def _note(self, sentence: str) -> None: ...

        def _publish(self) -> None: ...

        def _serving(self) -> str: ...

        def _host_roles(self) -> HostRoles | None: ...


        async def _provision_shadow(self) -> None: ...

        async def _wait_for_sync(self, *, restore_relaxed: bool = False) -> None: ...

    @workflow.signal
    def report_shadow_lost(self, loss: ShadowLoss) -> None:
        """From the fleet watcher: the shadow was lost for good (see the module)."""
        state = self._state
        if not state.capabilities.reshadow:
            self._note(f"Shadow lost ({loss.reason}); this platform cannot make it anew "
                       "elsewhere.")
            return
        if state.phase != "protected" or state.pending_cutover is not None \
                or state.pending_reshadow is not None:
            return  # the watcher reports again after another period if it is still lost
        state.pending_reshadow = loss

    def _reshadow_due(self) -> bool:
        state = self._state
        return state.pending_reshadow is not None and state.phase == "protected" \
            and state.pending_cutover is None and state.unprotect is None

    async def _reshadow(self) -> None:
        """Make the lost shadow anew on a spare host; ends ``protected`` or ``degraded``."""
        state = self._state
        loss, state.pending_reshadow = state.pending_reshadow, None
        hosts = state.spec.hosts
        if loss is None or hosts is None:
            return
        if loss.serving_node != self._serving():
            return  # a stale report from before a cutover: the roles have changed
        node = standby_node(state.spec.instance_id, loss.serving_node)
        roles = self._host_roles()
        assert roles is not None  # the spec names hosts
        lost = hosts.placement(roles.standby_role)
        state.shadow_healthy = False
        state.lost_hosts = [*state.lost_hosts, lost.host]
        spare = next((p for p in hosts.spares if p.host not in state.lost_hosts), None)
        what = (f"Shadow {node} on {lost.host} ({lost.address}) lost for "
                f"{loss.lost_for_s:.0f} s: {loss.reason}")
        if spare is None:
            await self._degraded_until_back(f"{what}. No spare host is left in hosts.spares")
            return
        try:  # the spare's agent first (and its replication login to the primary, as its
            # copy will log in): a spare that cannot take it must not take the placement
            await run_agent_task(AgentTask(spare.host, hello=AgentHello(VERSION, roles.source)))
        except (ActivityError, ApplicationError) as err:
            cause = err.cause if isinstance(err, ActivityError) and err.cause else err
            await self._degraded_until_back(f"{what}. The spare host {spare.host} cannot take "
                                            f"it: {cause}")
            return
        self._note(f"{what}. Making it anew on the spare host {spare.host} ({spare.address}).")
        state.spec.hosts = hosts.with_standby_on(roles.standby_role, spare)
        self._publish()  # the watcher and the router follow the new placement
        self._set_phase("provisioning")
        try:
            await self._provision_shadow()
            self._set_phase("syncing")
            await self._wait_for_sync()
        except (ActivityError, ApplicationError) as err:
            cause = err.cause if isinstance(err, ActivityError) and err.cause else err
            await self._degraded_until_back(
                f"The shadow could not be made on {spare.host}: {cause}")
            return
        state.sync_degraded = False  # the stack required the new standby; the watcher
        # restores a relax of its own and reports from a clean slate
        self._set_phase("protected")
        self._note(f"Shadow {node} is in sync on {spare.host}. Protected.")

    async def _degraded_until_back(self, why: str) -> None:
        """``degraded`` with ``why``; ``protected`` again once the shadow is back in sync,
        unless ``unprotect`` comes first."""
        state = self._state
        self._set_phase("degraded")
        self._note(f"{why}: no shadow for {state.spec.instance_id} until it is back in sync "
                   "(unprotect ends the protection).")
        back = asyncio.ensure_future(self._wait_for_sync(restore_relaxed=True))
        await workflow.wait_condition(lambda: back.done() or state.unprotect is not None)
        if not back.done():
            back.cancel()
            return  # the loop unprotects
        try:
            back.result()
        except (ActivityError, ApplicationError) as err:
            self._note(f"Still no shadow: {err.cause or err}.")
            return
        state.sync_degraded = False
        self._set_phase("protected")
        self._note(f"Shadow of {state.spec.instance_id} is back in sync. Protected.")
