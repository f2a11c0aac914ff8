"""Tier 1 with a lost shadow: writes wait a bounded time, then go on; sync comes back.

The rule (``sync_step``) and the platform's side of it (``relax_sync``, ``restore_sync``,
``relaxed_by_supervisor``) on real PostgreSQL and HAProxy; the fleet watcher applying it to
every protection is tested in ``tests/workflows/test_fleet_watcher.py``.
"""

from __future__ import annotations

import concurrent.futures
import time

from temporalio.testing import ActivityEnvironment

from activities.shadow import PlatformShadowActivities
from activities.watching.sync import RELAX, RESTORE, sync_step
from infra.local.postgres import PgServer, query_one
from infra.platform import Platform
from tests.conftest import LocalService, with_spec
from workers.registry import platforms
from workers.settings import Settings
from workers.workload import Writer, prepare_table


def _supervise(platform: Platform, degrade_after_s: float, timeout_s: float) -> str:
    """Apply the rule every 0.2 s until it acts; returns what it did."""
    lost_since: float | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = platform.replication_status()
        action, lost_since = sync_step(status, lost_since, time.time(), degrade_after_s,
                                       may_restore=platform.relaxed_by_supervisor())
        if action == RELAX:
            platform.relax_sync()
            return RELAX
        if action == RESTORE:
            platform.restore_sync()
            return RESTORE
        time.sleep(0.2)
    raise AssertionError(f"the rule did not act within {timeout_s} s")


def test_lost_shadow_degrades_then_restores(
    settings: Settings, local_service: LocalService
) -> None:
    """Stopping a tier-1 shadow stalls commits only until the rule relaxes sync; restarting it
    makes the rule require the shadow again, and only a relax of ours is undone."""
    served = platforms(settings)
    request = with_spec(local_service.request, tier=1)
    env = ActivityEnvironment()
    env.run(PlatformShadowActivities(served).provision_shadow, request)
    platform = served.platform_for(request)
    prepare_table(local_service.router)
    shadow = PgServer(home=settings.state_dir / "instances" / request.instance_id / "shadow",
                      port=request.spec.shadow_port)
    assert not platform.relaxed_by_supervisor()

    with Writer(local_service.router, rate=50) as writer, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        time.sleep(0.5)
        shadow.stop(mode="immediate")
        stopped_at = time.monotonic()
        assert pool.submit(_supervise, platform, 2.0, 60).result(timeout=60) == RELAX
        degraded_at = time.monotonic()
        time.sleep(1.0)
    assert platform.relaxed_by_supervisor()
    assert query_one(local_service.primary.endpoint, "SHOW synchronous_standby_names") == ""
    acked_after = [t for t in writer.stats.ack_times if t > degraded_at]
    stalled = [t for t in writer.stats.ack_times if stopped_at + 0.5 < t < degraded_at - 0.5]
    assert acked_after, "writes must go on once synchronous replication is relaxed"
    assert not stalled, "commits should wait for the lost synchronous shadow until degraded"

    shadow.start()
    assert _supervise(platform, 2.0, 60) == RESTORE
    status = platform.replication_status()
    assert status.sync_state == "sync" and not status.degraded
    assert not platform.relaxed_by_supervisor()
    platform.close()
    env.run(PlatformShadowActivities(served).destroy_shadow, request)
