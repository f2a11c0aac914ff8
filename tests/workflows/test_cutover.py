"""Planned cutovers on real PostgreSQL, HAProxy and Temporal, under write load.

The helpers here (a protected service, a cutover worker) are shared by the other
``test_cutover_*`` modules.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.cutover import PlatformCutoverActivities
from contracts.cutover import CutoverInput, CutoverResult, cutover_workflow_id
from contracts.shadow import PlatformRequest
from infra.local.platform import LocalPlatform
from tests.conftest import LocalService, acked_after, with_spec
from workers.registry import cutover_activities, platforms
from workers.settings import Settings
from workers.split_brain import SplitBrainMonitor, blackout_ms, failures_between
from workers.workload import Writer, missing_acked, prepare_table
from workflows.cutover import CutoverWorkflow


@dataclasses.dataclass
class Protected:
    """A primary behind HAProxy with a streaming shadow."""

    service: LocalService
    request: PlatformRequest
    platform: LocalPlatform

    @property
    def nodes(self) -> tuple[str, str]:
        """(primary node, shadow node)."""
        return self.platform.spec.primary_node, self.platform.spec.shadow_node

    def monitor(self) -> SplitBrainMonitor:
        """A split-brain monitor over both servers and the router."""
        primary, shadow = self.nodes
        return SplitBrainMonitor(
            {primary: self.platform.endpoint(primary), shadow: self.platform.endpoint(shadow)},
            self.service.haproxy, self.request.instance_id,
        )


async def protect(service: LocalService, settings: Settings, tier: int) -> Protected:
    """Provision a shadow of ``service`` at ``tier`` and wait until it is in sync."""
    request = with_spec(service.request, tier=tier)
    platform = platforms(settings).platform_for(request)
    assert isinstance(platform, LocalPlatform)
    await asyncio.to_thread(platform.provision_shadow)
    deadline = time.monotonic() + 60
    while True:
        status = await asyncio.to_thread(platform.replication_status)
        if status.state == "streaming" and (tier != 1 or status.sync_state == "sync"):
            break
        assert time.monotonic() < deadline, f"shadow never synced: {status}"
        await asyncio.sleep(0.1)
    prepare_table(service.router)
    return Protected(service, request, platform)


def cutover_worker(
    client: Client,
    settings: Settings,
    pool: concurrent.futures.ThreadPoolExecutor,
    task_queue: str,
    *,
    replace: Sequence[Callable[..., Any]] = (),
) -> Worker:
    """The workflow and the real cutover activities; ``replace`` swaps some by name."""
    activities = cutover_activities(
        PlatformCutoverActivities(platforms(settings), settings.state_dir)
    )
    names = {getattr(fn, "__temporal_activity_definition").name: fn for fn in replace}
    chosen = [
        names.get(getattr(fn, "__temporal_activity_definition").name, fn) for fn in activities
    ]
    return Worker(client, task_queue=task_queue, workflows=[CutoverWorkflow],
                  activities=chosen, activity_executor=pool)


async def run_cutover(
    client: Client, settings: Settings, task_queue: str, cutover: CutoverInput,
    *, replace: Sequence[Callable[..., Any]] = (),
) -> CutoverResult:
    """Execute one cutover with an in-process worker."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        async with cutover_worker(client, settings, pool, task_queue, replace=replace):
            result: CutoverResult = await client.execute_workflow(
                CutoverWorkflow.run, cutover,
                id=cutover_workflow_id(cutover.instance.instance_id) + f"-{uuid.uuid4().hex[:6]}",
                task_queue=task_queue,
            )
            return result


@pytest.mark.parametrize("tier", [1, 2])
async def test_planned_cutover_under_load_loses_nothing(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, tier: int,
) -> None:
    """Under 150 writes/s, a planned cutover moves traffic to the shadow, loses no acked
    write, never shows two writable primaries, and blacks writes out only briefly."""
    protected = await protect(local_service, settings, tier)
    primary, shadow = protected.nodes
    with Writer(local_service.router, rate=150) as writer, protected.monitor() as monitor:
        await acked_after(writer)
        started = time.monotonic()
        result = await run_cutover(
            temporal_env.client, settings, task_queue, CutoverInput(protected.request)
        )
        ended = time.monotonic()
        await acked_after(writer, since=ended)
    stats, report = writer.stats, monitor.report
    assert result.outcome == "completed", result.detail
    assert (result.former_primary, result.primary) == (primary, shadow)
    assert result.possible_loss_bytes == 0
    assert report.samples > 100 and report.split_brain_observations == 0, report.events
    assert report.router_both_weighted == 0
    assert missing_acked(local_service.shadow, stats.acked_ids) == []
    blackout = blackout_ms(stats.ack_times, started, ended)
    failed = failures_between(stats.failure_times, started, ended + 1)
    print(f"tier {tier}: blackout {blackout} ms, failed ops {failed}, steps {result.step_ms}")
    assert blackout < 1000 and failed <= 20
    assert any(moment > ended for moment in stats.ack_times), "no write after the cutover"
    assert protected.platform.get_weights() == {primary: 0, shadow: 100}
    former = protected.platform.probe(primary)
    assert former.reachable and not former.writable
    assert set(result.step_ms) >= {"fence_primary", "catch_up", "promote", "shift_traffic",
                                   "verify"}
    protected.platform.close()
