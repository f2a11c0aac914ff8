"""Shadow activities on real PostgreSQL, HAProxy, Pulumi and Temporal."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment

from contracts.errors import NON_RETRYABLE_TYPES
from contracts.shadow import (
    PlatformRequest,
    ReplicationStatus,
    ShadowActivities,
    WaitForSyncRequest,
)
from infra.local.ports import port_free
from infra.local.postgres import PgServer, query_one, startup_sync_method
from tests.conftest import LocalService, autogroup_nice, with_spec
from workers.registry import new_worker, pulumi_config
from workers.settings import Settings
from workers.workload import Writer, prepare_table, wait_until_present


@dataclasses.dataclass
class ProvisionInput:
    """Shadow to create, and the task queue whose worker runs the activities."""

    shadow: PlatformRequest
    activity_queue: str
    destroy_after: bool = False


@workflow.defn(sandboxed=False)
class ProvisionAndSync:
    """Test driver: provision, wait for sync, optionally destroy."""

    @workflow.run
    async def run(self, request: ProvisionInput) -> ReplicationStatus:
        options: dict[str, Any] = {
            "task_queue": request.activity_queue,
            "start_to_close_timeout": timedelta(minutes=5),
            "heartbeat_timeout": timedelta(seconds=10),
            # StackBusy is retryable: once under load, the killed worker's Pulumi CLI was still
            # alive 13 s after the SIGKILL (a process in a disk wait dies only when the wait
            # ends), and three quick attempts gave up; the retries must outlast it (~30 s here)
            # before one can prove the lock stale.
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(seconds=5),
                maximum_attempts=9,
                non_retryable_error_types=NON_RETRYABLE_TYPES,
            ),
        }
        await workflow.execute_activity_method(ShadowActivities.provision_shadow, request.shadow,
                                               **options)
        status = await workflow.execute_activity_method(
            ShadowActivities.wait_for_sync, WaitForSyncRequest(request.shadow, poll_interval_s=0.2),
            **options,
        )
        if request.destroy_after:
            await workflow.execute_activity_method(ShadowActivities.destroy_shadow,
                                                   request.shadow, **options)
        return status


async def _provision(
    client: Client, settings: Settings, task_queue: str, request: ProvisionInput
) -> ReplicationStatus:
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue,
                              extra_workflows=[ProvisionAndSync]):
            return await client.execute_workflow(
                ProvisionAndSync.run, request, id=f"provision-{uuid.uuid4()}",
                task_queue=task_queue,
            )


@pytest.mark.parametrize("tier", [1, 2, 3])
async def test_shadow_under_write_load_holds_every_acked_commit(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, tier: int,
) -> None:
    """Provisioned while clients write through HAProxy, the shadow reaches sync and then
    holds every acknowledged commit; writes never fail because a shadow is being built."""
    prepare_table(local_service.router)
    shadow = with_spec(local_service.request, tier=tier, archive_interval_s=2)
    with Writer(local_service.router, rate=100) as writer:
        status = await _provision(
            temporal_env.client, settings, task_queue, ProvisionInput(shadow, task_queue)
        )
    stats = writer.stats
    assert len(stats.acked_ids) > 100 and stats.failed_ops == 0
    if tier in (1, 2):
        # Bytes shipped count from the copy's start, not from the beginning of WAL (which
        # is already past 48 MiB on a fresh cluster).
        assert status.bytes_shipped is not None and 0 <= status.bytes_shipped < 32 * 2**20
    if tier == 1:
        assert status.sync_state == "sync" and status.state == "streaming"
    elif tier == 2:
        assert status.sync_state == "async" and status.state == "streaming"
    else:
        assert status.state == "archive"
    # Tier 1 is durable on the shadow at acknowledgement; replay makes it visible within ms.
    catch_up_s = {1: 5, 2: 30, 3: 60}[tier]
    assert wait_until_present(local_service.shadow, stats.acked_ids, timeout_s=catch_up_s) == []
    # Every write went to the primary: the shadow's router weight is 0.
    assert local_service.haproxy.weights(shadow.instance_id) == {
        shadow.instance_id: 100, f"{shadow.instance_id}-shadow": 0
    }
    # Pulumi ran at a low CPU share (pulumi-yielding); the standby it started did not inherit it.
    home = settings.state_dir / "instances" / shadow.instance_id / "shadow"
    standby = PgServer(home=home, port=shadow.spec.shadow_port).pid()
    assert standby is not None
    assert os.getpriority(os.PRIO_PROCESS, standby) == os.getpriority(os.PRIO_PROCESS, 0)
    autogroup = Path(f"/proc/{standby}/autogroup")
    assert not autogroup.exists() or autogroup_nice(autogroup.read_text()) == 0
    # Its first start synced the copy with one syncfs, not an fsync (and disk flush) per file.
    sync_method = query_one(local_service.shadow, "SHOW recovery_init_sync_method")
    assert sync_method == startup_sync_method()


async def test_destroy_leaves_nothing_behind(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """After destroy_shadow: no process, port, slot, directory, router entry or stack."""
    request = local_service.request
    await _provision(
        temporal_env.client, settings, task_queue,
        ProvisionInput(request, task_queue, destroy_after=True),
    )
    shadow_home = settings.state_dir / "instances" / request.instance_id / "shadow"
    assert port_free(request.spec.shadow_port)
    assert not shadow_home.exists()
    slots = query_one(local_service.primary.endpoint, "SELECT count(*) FROM pg_replication_slots")
    assert slots == 0
    assert local_service.haproxy.server_names(request.instance_id) == [request.instance_id]
    from infra.pulumi_engine import StackDriver

    assert not StackDriver(pulumi_config(settings)).exists(f"shadow-{request.instance_id}")
    sync_names = query_one(local_service.primary.endpoint, "SHOW synchronous_standby_names")
    assert sync_names == ""
