"""Risk-triggered shadows: a tier-3 protection may run without a standing shadow.

A mixin of ``InstanceProtectionWorkflow``. With ``spec.standing_shadow = False`` (tier 3
only) the protection starts in phase ``unshadowed``: the instance is watched and scored but
has no shadow. The fleet watcher's shadow planner (:mod:`activities.shadow_planner`, rules in
:mod:`models.shadow_budget`) signals ``set_shadow`` when the instance's risk rises and the
fleet budget has room — the protection then provisions the shadow and waits for sync as at
start — and again when the risk has stayed low for long enough, when the protection destroys
the shadow and goes back to ``unshadowed``. A shadow is never released while a cutover is
pending or running; a protection with a standing shadow ignores ``set_shadow``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow

from contracts.protection import ProtectionState, ShadowGrant

UNSHADOWED = "unshadowed"
"""Phase of a protection whose instance has no shadow on purpose."""


class ShadowOnDemand:
    """``set_shadow`` and the two steps it leads to."""

    if TYPE_CHECKING:  # supplied by InstanceProtectionWorkflow and ProtectionPhases

        @property
        def _state(self) -> ProtectionState: ...

        def _set_phase(self, phase: str) -> None: ...

        def _note(self, sentence: str) -> None: ...

        async def _provision(self) -> None: ...

        async def _destroy_shadow(self) -> None: ...

    @workflow.signal
    def set_shadow(self, grant: ShadowGrant) -> None:
        """From the fleet's shadow planner: provision or release a risk-triggered shadow."""
        state = self._state
        if state.spec.standing_shadow:
            self._note("Shadow grant ignored: this protection keeps a standing shadow.")
            return
        state.shadow_wanted = grant.wanted
        verb = "wanted" if grant.wanted else "no longer wanted"
        self._note(f"Shadow {verb}: {grant.reason}".rstrip(": "))

    def _starts_unshadowed(self) -> bool:
        """Whether the first provisioning waits for a grant."""
        state = self._state
        return not state.spec.standing_shadow and not state.shadow_wanted

    def _shadow_change_due(self) -> bool:
        state = self._state
        if state.spec.standing_shadow or state.unprotect is not None:
            return False
        if state.shadow_wanted:
            return state.phase == UNSHADOWED
        return state.phase == "protected" and state.pending_cutover is None

    async def _apply_shadow_change(self) -> None:
        """Provision a wanted shadow, or destroy one no longer wanted."""
        state = self._state
        if state.shadow_wanted:
            self._note("Risk rose: provisioning a shadow.")
            await self._provision()
            return
        self._set_phase("releasing")
        await self._destroy_shadow()
        self._set_phase(UNSHADOWED)
        self._note("Risk stayed low: shadow released. Watching without a shadow.")
