"""Shadows lost for good: reported so the protection can make them anew on a spare host.

A shadow that stops answering for seconds is tier 1's concern (``sync``: commits stop waiting
for it) and comes back by itself when its host reboots (its agent restarts the standby). One
that stays gone for the policy's ``reshadow_after_s`` (minutes by default) will not: its host
is dead or cut off for good, and its primary has no failover to offer. This monitor watches
the shadow of every ``protected`` protection whose platform can make it anew elsewhere
(``Capabilities.reshadow``) from two vantage points — the control worker reaching it as a
standby (``FleetObserver.standby_ready``) and its primary listing it as streaming
(``pg_stat_replication``) — and when neither has seen it for that long, signals
``report_shadow_lost``. A control worker cut off from a healthy shadow alone therefore never
moves it: its primary still sees it stream. A silent stream still counts as seen (unlike
tier 1's relax, which needs only a silence): the shadow is made anew under the same name, and
provisioning must not mistake the dead one's lingering connection for the new standby, so the
loss is timed from when the primary dropped that connection (``wal_sender_timeout``, 60 s by
default, after a host that vanished without closing it). It asks again after another period
while the loss lasts and the protection is still ``protected`` (it ignores a report while
busy).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from temporalio.client import Client

from activities.watching.checks import check_each
from activities.watching.failover import failover_due
from activities.watching.items import Target
from contracts.protection import ProtectionApi, ShadowLoss
from infra.errors import InfraError
from infra.factory import Platforms
from infra.platform import FleetObserver, Located

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 5.0
"""Time between two looks at a protection's shadow: the bound is minutes, and each look
costs the shadow a connection and its primary a query."""


@dataclass
class _Watch:
    target: Target
    located: Located
    lost_since: float | None = None


class ShadowLossMonitor:
    """Watches the shadows of ``protected`` protections on platforms that can re-shadow."""

    def __init__(self, client: Client, platforms: Platforms) -> None:
        self._client = client
        self._platforms = platforms
        self._watches: dict[str, _Watch] = {}
        self._observers: Mapping[str, FleetObserver] = {}

    def reset(self, observers: Mapping[str, FleetObserver]) -> None:
        """A new watcher run with its observers: a loss is timed anew."""
        self._watches.clear()
        self._observers = observers

    def track(self, target: Target, located: Located | None, *, supported: bool) -> None:
        """Watch ``target``'s shadow while it is ``protected`` on a platform that
        ``supported`` re-shadowing, its policy allows it, and its router names a serving
        node; else forget it (a loss is timed from when it can be acted on)."""
        wanted = (supported and located is not None and target.phase == "protected"
                  and target.policy.reshadow_after_s > 0)
        instance_id = target.instance_id
        if not wanted or located is None:
            self._watches.pop(instance_id, None)
            return
        watch = self._watches.get(instance_id)
        if watch is None or watch.target.workflow_id != target.workflow_id \
                or watch.located.node != located.node:
            self._watches[instance_id] = _Watch(target, located)
        else:
            watch.target = target

    def keep_only(self, instance_ids: set[str]) -> None:
        """Forget protections that are gone."""
        for gone in set(self._watches) - instance_ids:
            del self._watches[gone]

    async def run(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Look at every watched shadow each ``interval_s``, each on its own, until
        cancelled."""
        await check_each(lambda: dict(self._watches), self._check, interval_s)

    async def _check(self, watch: _Watch) -> None:
        seen, what = await asyncio.to_thread(self._seen, watch)
        now = time.time()
        after_s = watch.target.policy.reshadow_after_s
        due, watch.lost_since = failover_due(seen, watch.lost_since, now, after_s)
        if not due:
            return
        lost_for = now - (watch.lost_since or now)
        loss = ShadowLoss(watch.located.node, lost_for, what)
        try:
            await self._client.get_workflow_handle(watch.target.workflow_id).signal(
                ProtectionApi.report_shadow_lost, loss)
        except Exception as err:  # asked again at the next look
            log.warning("Could not tell %s its shadow is lost: %s", watch.target.workflow_id, err)
            return
        log.warning("%s: shadow lost for %.0f s (%s); reported.", watch.target.instance_id,
                    lost_for, what)
        watch.lost_since = now  # asked again after another period if it stays lost

    def _seen(self, watch: _Watch) -> tuple[bool, str]:
        """Whether either vantage point sees the shadow, and what was seen if neither."""
        request = dataclasses.replace(watch.target.request, serving_node=watch.located.node)
        observer = self._observers.get(request.spec.platform)
        if observer is not None and observer.standby_ready(request, watch.located):
            return True, ""
        try:
            platform = self._platforms.platform_for(request)
            try:
                status = platform.replication_status()
            finally:
                platform.close()
        except (InfraError, OSError, psycopg.Error) as err:
            # The primary cannot be asked: its own trouble is the failover's concern; its
            # shadow is not judged on a view nobody has.
            log.debug("Shadow check of %s: primary not asked: %s", request.instance_id, err)
            return True, ""
        if status.state == "streaming":
            return True, ""
        return False, (f"the control worker cannot reach it as a standby and its primary "
                       f"does not see it stream ({status.state})")
