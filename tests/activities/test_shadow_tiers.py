"""A protected instance changes tier by a stack update, without copying its data again."""

from __future__ import annotations

import dataclasses

from temporalio.testing import ActivityEnvironment

from activities.shadow import ShadowActivities, WaitForSyncRequest
from bench.workload import Writer, prepare_table, wait_until_present
from infra.local.postgres import query_one
from infra.pulumi_engine import StackDriver
from tests.conftest import LocalService
from workers.registry import pulumi_config
from workers.settings import Settings


def test_tier_changes_update_in_place(settings: Settings, local_service: LocalService) -> None:
    """2 → 1 → 3 → 2 under writes: each update reaches the new tier's sync state, the data
    directory is never re-seeded, and every acknowledged write reaches the shadow."""
    activities = ShadowActivities(StackDriver(pulumi_config(settings)), settings.state_dir)
    env = ActivityEnvironment()
    prepare_table(local_service.router)
    base = dataclasses.replace(local_service.request, archive_interval_s=2)
    expected = {1: ("streaming", "sync"), 2: ("streaming", "async"), 3: ("archive", "none")}

    with Writer(local_service.router, rate=50) as writer:
        first = env.run(activities.provision_shadow, base)
        for tier in (1, 3, 2):
            request = dataclasses.replace(base, tier=tier)
            result = env.run(activities.provision_shadow, request)
            # The seed time is an output of the original copy: unchanged means no re-copy.
            assert result.outputs["seed_seconds"] == first.outputs["seed_seconds"]
            assert result.outputs["tier"] == tier
            status = env.run(activities.wait_for_sync,
                             WaitForSyncRequest(request, poll_interval_s=0.2))
            assert (status.state, status.sync_state) == expected[tier]
            sync_names = query_one(local_service.primary.endpoint,
                                   "SHOW synchronous_standby_names")
            assert bool(sync_names) == (tier == 1)
            slots = query_one(local_service.primary.endpoint,
                              "SELECT count(*) FROM pg_replication_slots")
            assert slots == (0 if tier == 3 else 1)
    assert writer.stats.failed_ops == 0
    assert wait_until_present(local_service.shadow, writer.stats.acked_ids, timeout_s=30) == []
    env.run(activities.destroy_shadow, dataclasses.replace(base, tier=2))
