"""Tier 1's non-strict synchronous mode: writes never wait forever for a lost shadow.

Synchronous replication blocks every commit while no synchronous standby is connected. As in
Patroni's non-strict mode (``synchronous_mode_strict`` off), a primary whose tier-1 shadow has
not streamed for ``sync_degrade_after_s`` stops waiting for it: RPO > 0 from then, reported to
the protection. It waits for the shadow again once the shadow streams with a small lag.

:func:`sync_step` is the rule. :class:`SyncSupervisor` applies it to every local tier-1
protection in phase ``protected``, every second, inside the fleet watcher's long-running
activity: one shared heartbeat for the fleet instead of a supervising activity per protection,
whose heartbeats alone would cost ~38 actions per instance-hour (DESIGN.md's cost model). It
signals ``report_sync`` to a protection only when what it sees differs from what it last told
that protection (a cutover resets the protection's view: the stack sets the mode for the new
roles). It undoes only a relax made by a supervisor (a mark file next to the shadow's home),
never a setting the stack cleared on purpose.
The ``supervise_sync`` activity applies the same rule to one shadow, for callers that want a
dedicated supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
from temporalio.client import Client

from activities.local_checks import check_each
from activities.watch_local import serving_port
from infra.errors import InfraError
from infra.local.haproxy import HAProxyManager
from infra.local.platform import LocalPlatform
from infra.local.spec import LocalShadowSpec
from infra.platform import ReplicationStatus
from infra.pulumi_engine import StackDriver
from workers.observability import observe_sync_degraded
from workflows import search_attributes
from workflows.protection_state import SyncReport

log = logging.getLogger(__name__)

SYNC_LAG_BOUND_BYTES = 16 * 2**20
"""Largest replay lag at which a returning shadow is required again (tier 1's sync bound)."""
CHECK_INTERVAL_S = 1.0
"""Time between two checks of the fleet's tier-1 primaries."""

RELAX = "relax"
RESTORE = "restore"


def sync_step(
    status: ReplicationStatus, lost_since: float | None, now: float, degrade_after_s: float,
    *, may_restore: bool = True,
) -> tuple[str | None, float | None]:
    """What to do about one tier-1 primary after reading ``status``: :data:`RELAX`,
    :data:`RESTORE` or nothing, and when its shadow went missing (``None``: it streams).

    ``may_restore``: whether the relaxed mode is ours to undo (the stack also clears the
    setting, on purpose, while it destroys the shadow)."""
    streaming = status.state == "streaming"
    if status.degraded:
        small_lag = (status.lag_bytes or 0) <= SYNC_LAG_BOUND_BYTES
        return (RESTORE if may_restore and streaming and small_lag else None), None
    if streaming:
        return None, None
    lost_since = lost_since if lost_since is not None else now
    return (RELAX if now - lost_since >= degrade_after_s else None), lost_since


@dataclass
class _Target:
    workflow_id: str
    spec: LocalShadowSpec
    lost_since: float | None = None
    reported: bool = False
    """The mode the protection last heard (it starts, and restarts after a cutover, with
    synchronous commits); a report that did not arrive is sent again at the next check."""

    @property
    def relaxed_mark(self) -> Path:
        """Present while the mode is relaxed by a supervisor (any worker on this machine), so
        only a relax of ours is ever undone: the stack clears the setting on purpose while it
        destroys the shadow, and requiring a standby about to stop would block commits."""
        return self.spec.shadow_home.parent / "sync-relaxed"


class SyncSupervisor:
    """Tier 1's non-strict mode for the local protections the fleet watcher discovers."""

    def __init__(self, client: Client, driver: StackDriver, state_dir: Path) -> None:
        self._client = client
        self._driver = driver
        self._haproxy = HAProxyManager(state_dir / "haproxy")
        self._targets: dict[str, _Target] = {}

    def track(self, workflow_id: str, spec: LocalShadowSpec, tier: int, phase: str, *,
              strict: bool = False) -> None:
        """Supervise ``spec``'s primary while it is tier 1, ``protected`` and not ``strict``
        (the spec's ``sync_strict``); else not.

        Other phases are left alone: provisioning and recovery set the sync settings through
        the stack, and a cutover decides the roles itself."""
        if tier != 1 or phase != "protected" or strict:
            if self._targets.pop(spec.instance_id, None) is not None:
                observe_sync_degraded(spec.instance_id, False)  # no longer ours to report
            return
        target = self._targets.get(spec.instance_id)
        if target is None or target.workflow_id != workflow_id:
            self._targets[spec.instance_id] = _Target(workflow_id, spec)

    def keep_only(self, instance_ids: set[str]) -> None:
        """Forget protections that are gone."""
        for gone in set(self._targets) - instance_ids:
            del self._targets[gone]
            observe_sync_degraded(gone, False)

    async def run(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Check every target each ``interval_s``, each on its own (``check_each``), until
        cancelled."""
        await check_each(lambda: dict(self._targets), self._check_target, interval_s)

    async def _check_target(self, target: _Target) -> None:
        # A restore is checked against the protection's phase as it is now (the discovered
        # one may be 30 s old): requiring a standby the stack is destroying would block commits.
        may_restore = target.relaxed_mark.exists() and await self._confirmed_protected(target)
        report = await asyncio.to_thread(self._check, target, may_restore)
        if report is not None and await self._report(target, report):
            target.reported = report.degraded

    async def _confirmed_protected(self, target: _Target) -> bool:
        try:
            described = await self._client.get_workflow_handle(target.workflow_id).describe()
        except Exception as err:  # unknown: leave the mode relaxed (writes keep going)
            log.debug("Could not read the phase of %s: %s", target.workflow_id, err)
            return False
        return described.typed_search_attributes.get(search_attributes.PHASE) == "protected"

    def _check(self, target: _Target, may_restore: bool) -> SyncReport | None:
        platform = self._platform(target.spec)
        if platform is None:
            return None
        try:
            status = platform.replication_status()
            action, target.lost_since = sync_step(
                status, target.lost_since, time.time(), target.spec.sync_degrade_after_s,
                may_restore=may_restore)
            if action == RELAX:
                target.relaxed_mark.write_text(f"{time.time():.3f}\n")  # before: see the mark
                platform.relax_sync()
            elif action == RESTORE:
                platform.restore_sync()
            if not status.degraded and action is None:
                target.relaxed_mark.unlink(missing_ok=True)  # required again, by whoever
        except (InfraError, OSError, psycopg.Error) as err:
            # The primary is down or restarting: that is the cutover's concern, not ours.
            log.debug("Tier-1 check of %s skipped: %s", target.spec.instance_id, err)
            return None
        instance = target.spec.instance_id
        degraded = {RELAX: True, RESTORE: False}.get(action or "", status.degraded)
        observe_sync_degraded(instance, degraded)
        if action == RELAX:
            log.warning("%s: shadow lost for %.0f s; commits no longer wait for it.", instance,
                        time.time() - (target.lost_since or time.time()))
            reason = (f"shadow not streaming for {target.spec.sync_degrade_after_s:g} s; "
                      "commits no longer wait for it (RPO > 0)")
        elif action == RESTORE:
            target.relaxed_mark.unlink(missing_ok=True)
            log.info("%s: shadow streams again; commits wait for it again.", instance)
            reason = "shadow streams again; commits wait for it (RPO 0)"
        else:
            reason = ("commits do not wait for the shadow (RPO > 0)" if degraded
                      else "commits wait for the shadow (RPO 0)")
        # Sent when what the protection last heard differs from what we see, so a lost
        # report is repaired at the next check; nothing is sent while both agree.
        return SyncReport(degraded, reason) if degraded != target.reported else None

    def _platform(self, spec: LocalShadowSpec) -> LocalPlatform | None:
        """The platform with the roles the router shows (``None`` with no traffic or traffic
        on both: mid-shift, the roles are the cutover's business)."""
        port = serving_port(self._haproxy, spec)
        if port is None:
            return None
        serving = spec.primary_node if port == spec.primary_port else spec.shadow_node
        return LocalPlatform(replace(spec, serving_node=serving), self._driver)

    async def _report(self, target: _Target, report: SyncReport) -> bool:
        """Signal ``report_sync``; ``False`` if it failed (sent again at the next check)."""
        try:
            await self._client.get_workflow_handle(target.workflow_id).signal(
                "report_sync", report)
        except Exception as err:  # the mode changed anyway; the log and metric say so
            log.warning("Could not tell %s about its tier-1 mode: %s", target.workflow_id, err)
            return False
        return True
