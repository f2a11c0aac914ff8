"""Tier 1 with a lost shadow: writes wait a bounded time, then go on; sync comes back."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time

from temporalio.testing import ActivityEnvironment

from activities.shadow import ShadowActivities, SuperviseSyncRequest
from bench.workload import Writer, prepare_table
from infra.local.postgres import PgServer, query_one
from infra.pulumi_engine import StackDriver
from tests.conftest import LocalService
from workers.registry import pulumi_config
from workers.settings import Settings


def test_lost_shadow_degrades_then_restores(
    settings: Settings, local_service: LocalService
) -> None:
    """Stopping a tier-1 shadow stalls commits only until supervise_sync relaxes sync;
    restarting it makes supervise_sync require the shadow again."""
    activities = ShadowActivities(StackDriver(pulumi_config(settings)), settings.state_dir)
    request = dataclasses.replace(local_service.request, tier=1)
    env = ActivityEnvironment()
    env.run(activities.provision_shadow, request)
    prepare_table(local_service.router)
    shadow = PgServer(home=settings.state_dir / "instances" / request.instance_id / "shadow",
                      port=request.shadow_port)
    supervise = SuperviseSyncRequest(request, degrade_after_s=2.0, check_interval_s=0.2)

    with Writer(local_service.router, rate=50) as writer, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        time.sleep(0.5)
        shadow.stop(mode="immediate")
        stopped_at = time.monotonic()
        change = pool.submit(env.run, activities.supervise_sync, supervise).result(timeout=60)
        degraded_at = time.monotonic()
        time.sleep(1.0)
    assert change.degraded and change.changed
    assert query_one(local_service.primary.endpoint, "SHOW synchronous_standby_names") == ""
    acked_after = [t for t in writer.stats.ack_times if t > degraded_at]
    stalled = [t for t in writer.stats.ack_times if stopped_at + 0.5 < t < degraded_at - 0.5]
    assert acked_after, "writes must go on once synchronous replication is relaxed"
    assert not stalled, "commits should wait for the lost synchronous shadow until degraded"

    shadow.start()
    restored = env.run(activities.supervise_sync, supervise)
    assert restored.changed and not restored.degraded
    status = env.run(activities.replication_status, request)
    assert status.sync_state == "sync" and not status.degraded
    env.run(activities.destroy_shadow, request)
