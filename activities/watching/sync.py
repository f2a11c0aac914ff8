"""Tier 1's non-strict synchronous mode: writes never wait forever for a lost shadow.

Synchronous replication blocks every commit while no synchronous standby is connected. As in
Patroni's non-strict mode (``synchronous_mode_strict`` off), a primary whose tier-1 shadow has
not streamed for ``degrade_after_s`` stops waiting for it: RPO > 0 from then, reported to the
protection. It waits for the shadow again once the shadow streams with a small lag.

:func:`sync_step` is the rule. :class:`SyncSupervisor` applies it to every tier-1 protection
in phase ``protected`` whose platform offers it (``Capabilities.sync_relax``), every second,
inside the fleet watcher's long-running activity: one shared heartbeat for the fleet instead
of a supervising activity per protection, whose heartbeats alone would cost ~38 actions per
instance-hour (DESIGN.md's cost model). It signals ``report_sync`` to a protection only when
what it sees differs from what it last told that protection (a cutover resets the
protection's view: the stack sets the mode for the new roles). It undoes only a relax made by
a supervisor (``Platform.relaxed_by_supervisor``), never a setting the stack cleared on
purpose while destroying the shadow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg
from temporalio.client import Client

from activities.watching.checks import check_each
from activities.watching.items import Target
from contracts import search_attributes
from contracts.protection import ProtectionApi, SyncReport
from contracts.shadow import SYNC_LAG_BOUND_BYTES, ReplicationStatus
from infra.errors import InfraError
from infra.factory import Platforms
from infra.observability import observe_sync_degraded
from infra.platform import FleetObserver, Platform

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
"""Time between two checks of the fleet's tier-1 primaries."""
DEGRADE_AFTER_S = 10.0
"""How long commits may wait for a lost tier-1 shadow before the mode is relaxed."""

RELAX = "relax"
RESTORE = "restore"


def sync_step(
    status: ReplicationStatus, lost_since: float | None, now: float, degrade_after_s: float,
    *, may_restore: bool = True, silent_s: float = 0.0,
) -> tuple[str | None, float | None]:
    """What to do about one tier-1 primary after reading ``status``: :data:`RELAX`,
    :data:`RESTORE` or nothing, and when its shadow went missing (``None``: it streams).

    ``may_restore``: whether the relaxed mode is ours to undo (the stack also clears the
    setting, on purpose, while it destroys the shadow). ``silent_s``: how long the shadow's
    reply time has not changed (:class:`ReplyClock`); a shadow silent for
    :data:`STALE_REPLY_S` is lost even while its connection still reads ``streaming``."""
    if status.degraded:
        return (RESTORE if may_restore and restorable(status, silent_s) else None), None
    if status.state == "streaming" and silent_s < STALE_REPLY_S:
        return None, None
    # A silent shadow was lost when it last replied, not when its silence was noticed.
    lost_since = lost_since if lost_since is not None else now - silent_s
    return (RELAX if now - lost_since >= degrade_after_s else None), lost_since


STALE_REPLY_S = 15.0
"""A shadow whose reply time has not changed for this long is lost, though its primary still
lists it ``streaming``: a partitioned or frozen standby's connection stays up until the
primary's ``wal_sender_timeout`` (60 s by default), and tier 1's commits wait for it all that
time (measured: a shadow host partitioned for 20 s stalled every commit and was never
relaxed). Above PostgreSQL's default ``wal_receiver_status_interval`` (10 s), the longest an
idle healthy standby stays silent (the agent's standbys reply every second)."""


def restorable(status: ReplicationStatus, silent_s: float = 0.0) -> bool:
    """A relaxed tier 1 whose shadow streams again, replying, within the restore bound:
    commits may wait for it again."""
    return (status.degraded and status.state == "streaming" and silent_s < STALE_REPLY_S
            and (status.lag_bytes or 0) <= SYNC_LAG_BOUND_BYTES)


@dataclass
class ReplyClock:
    """How long a shadow's reply time has stayed the same, by this worker's clock (the reply
    time itself is the shadow's clock, which may be skewed: it is only compared with
    itself)."""

    last: str | None = None
    since: float = 0.0

    def silent_s(self, reply_time: str | None, now: float) -> float:
        """Seconds the reply time has not changed (0 when it just did or is unknown)."""
        if reply_time is None or reply_time != self.last:
            self.last, self.since = reply_time, now
            return 0.0
        return now - self.since


@dataclass
class _Supervised:
    target: Target
    lost_since: float | None = None
    replies: ReplyClock = dataclasses.field(default_factory=ReplyClock)
    reported: bool = False
    """The mode the protection last heard (it starts, and restarts after a cutover, with
    synchronous commits); a report that did not arrive is sent again at the next check."""


class SyncSupervisor:
    """Tier 1's non-strict mode for the protections the fleet watcher discovers."""

    def __init__(self, client: Client, platforms: Platforms,
                 degrade_after_s: float = DEGRADE_AFTER_S) -> None:
        self._client = client
        self._platforms = platforms
        self._degrade_after_s = degrade_after_s
        self._targets: dict[str, _Supervised] = {}
        self._observers: Mapping[str, FleetObserver] = {}

    def reset(self, observers: Mapping[str, FleetObserver]) -> None:
        """A new watcher run with its observers."""
        self._observers = observers

    def track(self, target: Target, *, supported: bool) -> None:
        """Supervise ``target``'s primary while it is tier 1, ``protected``, not strict, and
        its platform ``supported`` the mode; else not. Other phases are left alone:
        provisioning and recovery set the sync settings through the stack, and a cutover
        decides the roles itself."""
        instance_id = target.instance_id
        wanted = (supported and target.tier == 1 and target.phase == "protected"
                  and not target.request.spec.sync_strict)
        if not wanted:
            if self._targets.pop(instance_id, None) is not None:
                observe_sync_degraded(instance_id, False)  # no longer ours to report
            return
        known = self._targets.get(instance_id)
        if known is None or known.target.workflow_id != target.workflow_id:
            self._targets[instance_id] = _Supervised(target)
        else:
            known.target = target

    def keep_only(self, instance_ids: set[str]) -> None:
        """Forget protections that are gone."""
        for gone in set(self._targets) - instance_ids:
            del self._targets[gone]
            observe_sync_degraded(gone, False)

    async def run(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Check every target each ``interval_s``, each on its own, until cancelled."""
        await check_each(lambda: dict(self._targets), self._check_target, interval_s)

    async def _check_target(self, supervised: _Supervised) -> None:
        ours = await asyncio.to_thread(self._with_platform, supervised,
                                       lambda p: p.relaxed_by_supervisor())
        # A restore is checked against the protection's phase as it is now (the discovered
        # one may be 30 s old): requiring a standby the stack is destroying would block
        # commits. Asked only while a relax of ours stands, which is rare.
        may_restore = bool(ours) and await self._confirmed_protected(supervised)
        report = await asyncio.to_thread(self._with_platform, supervised,
                                         lambda p: self._apply(supervised, p, may_restore))
        if isinstance(report, SyncReport) and await self._report(supervised, report):
            supervised.reported = report.degraded

    async def _confirmed_protected(self, supervised: _Supervised) -> bool:
        """Whether the protection is ``protected`` now (``describe`` costs no action)."""
        try:
            described = await self._client.get_workflow_handle(
                supervised.target.workflow_id).describe()
        except Exception as err:  # unknown: leave the mode relaxed (writes keep going)
            log.debug("Could not read the phase of %s: %s", supervised.target.workflow_id, err)
            return False
        return described.typed_search_attributes.get(search_attributes.PHASE) == "protected"

    def _with_platform(self, supervised: _Supervised,
                       use: Callable[[Platform], object]) -> object:
        """``use`` the platform of the roles the router shows now; ``None`` mid-shift (the
        roles are the cutover's business) or when the primary cannot be asked."""
        target = supervised.target
        observer = self._observers.get(target.request.spec.platform)
        located = observer.locate({target.instance_id: target.request}) if observer else {}
        serving = located.get(target.instance_id)
        if serving is None:
            return None  # no traffic or traffic on both: mid-shift, the cutover's business
        request = dataclasses.replace(target.request, serving_node=serving.node)
        try:
            platform = self._platforms.platform_for(request)
            try:
                return use(platform)
            finally:
                platform.close()
        except (InfraError, OSError, psycopg.Error) as err:
            # The primary is down or restarting: that is the failover's concern, not ours.
            log.debug("Tier-1 check of %s skipped: %s", target.instance_id, err)
            return None

    def _apply(self, supervised: _Supervised, platform: Platform,
               may_restore: bool) -> SyncReport | None:
        instance = supervised.target.instance_id
        status = platform.replication_status()
        now = time.time()
        action, supervised.lost_since = sync_step(
            status, supervised.lost_since, now, self._degrade_after_s,
            may_restore=may_restore,
            silent_s=supervised.replies.silent_s(status.reply_time, now))
        if action == RELAX:
            platform.relax_sync()
        elif action == RESTORE or (may_restore and not status.degraded):
            platform.restore_sync()  # also forgets a mark left by a relax undone elsewhere
        degraded = {RELAX: True, RESTORE: False}.get(action or "", status.degraded)
        observe_sync_degraded(instance, degraded)
        if action == RELAX:
            log.warning("%s: shadow lost for %.0f s; commits no longer wait for it.", instance,
                        time.time() - (supervised.lost_since or time.time()))
            reason = (f"shadow not streaming for {self._degrade_after_s:g} s; "
                      "commits no longer wait for it (RPO > 0)")
        elif action == RESTORE:
            log.info("%s: shadow streams again; commits wait for it again.", instance)
            reason = "shadow streams again; commits wait for it (RPO 0)"
        else:
            reason = ("commits do not wait for the shadow (RPO > 0)" if degraded
                      else "commits wait for the shadow (RPO 0)")
        # Sent when what the protection last heard differs from what we see, so a lost
        # report is repaired at the next check; nothing is sent while both agree.
        return SyncReport(degraded, reason) if degraded != supervised.reported else None

    async def _report(self, supervised: _Supervised, report: SyncReport) -> bool:
        """Signal ``report_sync``; ``False`` if it failed (sent again at the next check)."""
        try:
            await self._client.get_workflow_handle(supervised.target.workflow_id).signal(
                ProtectionApi.report_sync, report)
        except Exception as err:  # the mode changed anyway; the log and metric say so
            log.warning("Could not tell %s about its tier-1 mode: %s",
                        supervised.target.workflow_id, err)
            return False
        return True
