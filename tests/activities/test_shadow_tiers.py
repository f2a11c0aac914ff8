"""A protected instance changes tier by a stack update, without copying its data again."""

from __future__ import annotations

import time
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.shadow import PlatformShadowActivities
from contracts.shadow import WaitForSyncRequest
from infra.local.postgres import PgEndpoint, query_one
from tests.conftest import LocalService, with_spec
from workers.registry import platforms
from workers.settings import Settings
from workers.workload import Writer, prepare_table, wait_until_present


def test_tier_changes_update_in_place(settings: Settings, local_service: LocalService) -> None:
    """2 → 1 → 3 → 2 under writes: each update reaches the new tier's sync state, the data
    directory is never re-seeded, and every acknowledged write reaches the shadow."""
    activities = PlatformShadowActivities(platforms(settings))
    env = ActivityEnvironment()
    prepare_table(local_service.router)
    base = with_spec(local_service.request, archive_interval_s=2)
    expected = {1: ("streaming", "sync"), 2: ("streaming", "async"), 3: ("archive", "none")}

    with Writer(local_service.router, rate=50) as writer:
        first = env.run(activities.provision_shadow, base)
        for tier in (1, 3, 2):
            request = with_spec(base, tier=tier)
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
    env.run(activities.destroy_shadow, with_spec(base, tier=2))


def _archiving(endpoint: PgEndpoint) -> dict[str, tuple[str, str]]:
    with endpoint.connect() as conn:
        rows = conn.execute(
            "SELECT name, setting, coalesce(sourcefile, '') FROM pg_settings"
            " WHERE name IN ('archive_command', 'archive_timeout')"
        ).fetchall()
    return {name: (value, Path(source).name) for name, value, source in rows}


def test_tier3_ships_compressed_segments_and_gives_archiving_back(
    settings: Settings, local_service: LocalService
) -> None:
    """Tier 3 archives zstd-compressed segments the standby restores; leaving tier 3 (by a
    tier change, then by destroy) puts back the primary's own archive_command from ALTER
    SYSTEM and its default archive_timeout, instead of an empty command that keeps WAL."""
    activities = PlatformShadowActivities(platforms(settings))
    env = ActivityEnvironment()
    primary = local_service.primary.endpoint
    own_command = "test -f %p"  # the operator's, set with ALTER SYSTEM before we came
    with primary.connect() as conn:
        conn.execute(f"ALTER SYSTEM SET archive_command = '{own_command}'")
        conn.execute("SELECT pg_reload_conf()")
    before = _archiving(primary)
    assert before["archive_command"] == (own_command, "postgresql.auto.conf")
    prepare_table(local_service.router)
    tier3 = with_spec(local_service.request, tier=3, archive_interval_s=1)
    archive = settings.state_dir / "instances" / tier3.instance_id / "wal-archive"

    for leave in ("tier change", "destroy"):
        env.run(activities.provision_shadow, tier3)
        assert _archiving(primary)["archive_command"][0].startswith(f"test ! -f {archive}/")
        with Writer(local_service.router, rate=100) as writer:
            time.sleep(3)
        env.run(activities.wait_for_sync, WaitForSyncRequest(tier3, poll_interval_s=0.2))
        assert wait_until_present(local_service.shadow, writer.stats.acked_ids, timeout_s=30) == []
        segments = [f for f in archive.iterdir() if f.name[:8].isdigit()]
        assert segments and all(f.name.endswith(".zst") for f in segments)
        # A 16 MiB segment closed early by archive_timeout is mostly empty: well under 1 MiB.
        assert max(f.stat().st_size for f in segments) < 2**20

        if leave == "tier change":
            env.run(activities.provision_shadow, with_spec(tier3, tier=2))
        else:
            env.run(activities.destroy_shadow, tier3)
        assert _archiving(primary) == before
        assert not archive.exists()
    assert query_one(primary, "SELECT count(*) FROM pg_replication_slots") == 0
