"""The fleet watcher's shadow planner: who gets a risk-triggered shadow, signalled on change.

Each watcher round feeds it the latest readiness scores; it runs
:func:`models.shadow_budget.plan_shadows` over every watched protection and signals
``set_shadow`` to a protection without a standing shadow only when the answer changes
(provision, release), so a steady fleet costs no Temporal actions. Protections with a
standing shadow (every tier 1 and 2, and tier 3 unless its spec says otherwise) count against
the budget and are never signalled.

What it believes about each on-demand protection's shadow is what it last told it; after a
watcher restart it starts from "no shadow" and may repeat a provision signal, which the
protection ignores when it already has one (the signal is idempotent).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from temporalio.client import Client

from activities.watching.items import Target
from contracts.protection import ProtectionApi, ShadowGrant
from contracts.watch import ShadowBudget
from models.shadow_budget import FleetMember, ShadowBudgetState, plan_shadows

log = logging.getLogger(__name__)


@dataclass
class _Tracked:
    workflow_id: str
    tier: int
    standing: bool
    readiness_score: float = math.nan
    has_shadow: bool = False


class ShadowPlanner:
    """Plans shadows for the watched fleet and tells the protections that must act."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._state = ShadowBudgetState()
        self._tracked: dict[str, _Tracked] = {}

    def track(self, target: Target) -> None:
        """Learn (or refresh) a protection from its spec."""
        instance_id, workflow_id = target.instance_id, target.workflow_id
        tier, standing = target.request.spec.tier, target.request.spec.standing_shadow
        known = self._tracked.get(instance_id)
        if known is None:
            self._tracked[instance_id] = _Tracked(workflow_id, tier, standing, has_shadow=standing)
        else:
            known.workflow_id, known.tier, known.standing = workflow_id, tier, standing

    def note_score(self, instance_id: str, readiness_score: float) -> None:
        """The instance's latest score."""
        if instance_id in self._tracked:
            self._tracked[instance_id].readiness_score = readiness_score

    async def update(self, instance_ids: list[str], now: float,
                     config: ShadowBudget) -> int:
        """Plan for the watched instances under ``config``; returns the signals sent."""
        for gone in set(self._tracked) - set(instance_ids):
            del self._tracked[gone]
        members = [FleetMember(iid, item.tier, item.readiness_score,
                               item.has_shadow or item.standing, item.standing)
                   for iid, item in self._tracked.items()]
        decisions, self._state = plan_shadows(self._state, config, members, now)
        sent = 0
        for decision in decisions:
            item = self._tracked[decision.instance_id]
            if item.standing or decision.action not in ("provision", "release"):
                continue
            wanted = decision.action == "provision"
            await self._client.get_workflow_handle(item.workflow_id).signal(
                ProtectionApi.set_shadow, ShadowGrant(wanted, decision.reason))
            item.has_shadow = wanted
            log.info("%s: %s", decision.instance_id, decision.reason)
            sent += 1
        return sent
