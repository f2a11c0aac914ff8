"""Tier 1's non-strict rule, and which protections the fleet watcher supervises.

The rule runs against real servers in ``tests/workflows/test_fleet_watcher.py`` (the
watcher) and ``tests/activities/test_shadow_sync.py`` (the platform's side); here its edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from temporalio.client import Client

from activities.watching.items import Target
from activities.watching.sync import RELAX, RESTORE, ReplyClock, SyncSupervisor, sync_step
from contracts.shadow import SYNC_LAG_BOUND_BYTES, ReplicationStatus
from infra.factory import Platforms
from infra.platform import PlatformContext
from tests.conftest import local_request, with_spec


def _status(state: str, *, degraded: bool = False, lag: int | None = 0) -> ReplicationStatus:
    return ReplicationStatus(state=state, sync_state="sync" if state == "streaming" else "",
                             lag_bytes=lag, lag_seconds=None, replay_position=None,
                             primary_position=None, degraded=degraded)


def test_a_lost_shadow_is_relaxed_only_after_the_bound() -> None:
    """The clock starts at the first check without a stream and resets when it streams."""
    lost = _status("")
    assert sync_step(lost, None, 100.0, 10.0) == (None, 100.0)
    assert sync_step(lost, 100.0, 109.9, 10.0) == (None, 100.0)
    assert sync_step(lost, 100.0, 110.0, 10.0) == (RELAX, 100.0)
    assert sync_step(_status("streaming"), 100.0, 105.0, 10.0) == (None, None)
    assert sync_step(_status("catchup"), 100.0, 111.0, 10.0) == (RELAX, 100.0)
    # Listed as streaming but silent (a partitioned or frozen standby): lost from its last
    # reply, so relaxed as soon as its silence counts, not degrade_after_s later.
    streaming = _status("streaming")
    assert sync_step(streaming, None, 100.0, 10.0, silent_s=14.9) == (None, None)
    assert sync_step(streaming, None, 100.0, 10.0, silent_s=15.0) == (RELAX, 85.0)


def test_a_relaxed_primary_requires_its_shadow_again_once_it_streams_close_behind() -> None:
    assert sync_step(_status("streaming", degraded=True), None, 0.0, 10.0) == (RESTORE, None)


def test_the_reply_clock_counts_only_an_unchanged_reply_time() -> None:
    """Silence is timed by this worker's clock from the first sight of a reply time that then
    stays the same; a new reply time, or none, starts it over."""
    clock = ReplyClock()
    assert clock.silent_s("12:00:00", 100.0) == 0.0
    assert clock.silent_s("12:00:00", 104.5) == 4.5
    assert clock.silent_s("12:00:01", 105.0) == 0.0
    assert clock.silent_s(None, 120.0) == 0.0
    far = _status("streaming", degraded=True, lag=SYNC_LAG_BOUND_BYTES + 1)
    assert sync_step(far, None, 0.0, 10.0) == (None, None)
    assert sync_step(_status("", degraded=True), 5.0, 100.0, 10.0) == (None, None)
    # Cleared by someone else (the stack destroying the shadow): not ours to undo.
    assert sync_step(_status("streaming", degraded=True), None, 0.0, 10.0,
                     may_restore=False) == (None, None)


def test_only_protected_non_strict_tier1_protections_are_supervised(tmp_path: Path) -> None:
    """Tier 1, phase protected, not strict, on a platform that offers the mode: else not."""
    supervisor = SyncSupervisor(cast(Client, None), Platforms(PlatformContext(None, tmp_path)))
    request = local_request("db-a", 5433, 5434, 6433, tier=1)

    def target(tier: int, phase: str, strict: bool = False) -> Target:
        return Target("protect-db-a", with_spec(request, sync_strict=strict), phase, tier)

    targets: dict[str, Any] = supervisor._targets
    for tier, phase, strict in ((2, "protected", False), (1, "cutting_over", False),
                                (1, "recovering", False), (1, "protected", True)):
        supervisor.track(target(tier, phase, strict), supported=True)
        assert not targets, (tier, phase, strict)
    supervisor.track(target(1, "protected"), supported=False)  # the platform lacks the mode
    assert not targets
    supervisor.track(target(1, "protected"), supported=True)
    assert list(targets) == ["db-a"]
    supervisor.track(target(1, "cutting_over"), supported=True)  # a cutover began: hands off
    assert not targets
    supervisor.track(target(1, "protected"), supported=True)
    supervisor.keep_only(set())
    assert not targets
