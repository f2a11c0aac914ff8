"""Tier 1's non-strict rule, and which protections the fleet watcher supervises.

The rule runs against real servers in ``tests/workflows/test_fleet_watcher.py`` (the
watcher) and ``tests/activities/test_shadow_sync.py`` (the activity); here its edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from temporalio.client import Client

from activities.sync_supervisor import (
    RELAX,
    RESTORE,
    SYNC_LAG_BOUND_BYTES,
    SyncSupervisor,
    sync_step,
)
from infra.local.spec import LocalShadowSpec
from infra.platform import ReplicationStatus
from infra.pulumi_engine import PulumiConfig, StackDriver


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


def test_a_relaxed_primary_requires_its_shadow_again_once_it_streams_close_behind() -> None:
    assert sync_step(_status("streaming", degraded=True), None, 0.0, 10.0) == (RESTORE, None)
    far = _status("streaming", degraded=True, lag=SYNC_LAG_BOUND_BYTES + 1)
    assert sync_step(far, None, 0.0, 10.0) == (None, None)
    assert sync_step(_status("", degraded=True), 5.0, 100.0, 10.0) == (None, None)
    # Cleared by someone else (the stack destroying the shadow): not ours to undo.
    assert sync_step(_status("streaming", degraded=True), None, 0.0, 10.0,
                     may_restore=False) == (None, None)


def test_only_protected_non_strict_tier1_protections_are_supervised(tmp_path: Path) -> None:
    driver = StackDriver(PulumiConfig(backend_url="file://" + str(tmp_path),
                                      passphrase_file=tmp_path / "p", work_root=tmp_path))
    supervisor = SyncSupervisor(cast(Client, None), driver, tmp_path)
    spec = LocalShadowSpec(instance_id="db-a", primary_port=5433, shadow_port=5434,
                           router_port=6433, state_dir=tmp_path, tier=1)
    targets: dict[str, Any] = supervisor._targets
    for tier, phase, strict in ((2, "protected", False), (1, "cutting_over", False),
                                (1, "recovering", False), (1, "protected", True)):
        supervisor.track("protect-db-a", spec, tier, phase, strict=strict)
        assert not targets, (tier, phase, strict)
    supervisor.track("protect-db-a", spec, 1, "protected")
    assert list(targets) == ["db-a"]
    supervisor.track("protect-db-a", spec, 1, "cutting_over")  # a cutover began: hands off
    assert not targets
    supervisor.track("protect-db-a", spec, 1, "protected")
    supervisor.keep_only(set())
    assert not targets
