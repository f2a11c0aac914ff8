"""A tier-3 protection without a standing shadow gets one when the fleet watcher's planner
grants it and gives it back when released (real PostgreSQL, HAProxy, Pulumi, Temporal)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.policy import FleetBudget
from contracts.protection import ProtectionStatus
from contracts.spec import ProtectionSpec, SpecError, validate_spec
from contracts.watch import ShadowBudget, WatchFleetInput
from tests.conftest import LocalService
from workers.cli_spec import SpecFileError, load_spec_file
from workers.protect import start_protection
from workers.registry import new_worker
from workers.settings import Settings
from workflows.fleet_watcher import FleetWatcherWorkflow
from workflows.protection import InstanceProtectionWorkflow

# Any score grants a shadow at once; then any score below 100 releases it at once.
GRANT = ShadowBudget(tier3_threshold=0.0, release_below=0.0, tier3_readings=1)
RELEASE = ShadowBudget(tier3_threshold=100.0, release_below=100.0, release_after_s=0.0)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def _until(handle: WorkflowHandle, check: object, timeout_s: float = 180) -> ProtectionStatus:
    assert callable(check)
    async with asyncio.timeout(timeout_s):
        while not check(status := await handle.query(InstanceProtectionWorkflow.status)):
            await asyncio.sleep(0.2)
    return status


async def _watch(client: Client, task_queue: str, budget: ShadowBudget) -> WorkflowHandle:
    return await client.start_workflow(
        FleetWatcherWorkflow.run,
        WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=120,
                        budget=FleetBudget(advisory=True), shadow_budget=budget),
        id=f"watcher-{uuid.uuid4().hex[:8]}", task_queue=task_queue)


def test_standing_shadow_off_needs_tier_3(tmp_path: Path) -> None:
    """Tiers 1 and 2 always keep a shadow; asking otherwise names the fix, and in a spec file
    the line; tier 3 may go without."""
    with pytest.raises(SpecError, match="standing_shadow false needs tier 3"):
        validate_spec(ProtectionSpec("db-x", "local", 2, 5001, 5002, 5003, standing_shadow=False))
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("instance_id: db-x\ntier: 2\nprimary_port: 5001\nshadow_port: 5002\n"
                         "router_port: 5003\nstanding_shadow: false\n")
    with pytest.raises(SpecFileError, match=r"spec.yaml:6: standing_shadow false needs tier 3"):
        load_spec_file(spec_file)
    spec_file.write_text(spec_file.read_text().replace("tier: 2", "tier: 3"))
    assert load_spec_file(spec_file).standing_shadow is False


async def test_tier3_shadow_follows_the_planner(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Unshadowed at start (no standby process); the watcher's planner grants a shadow, which
    is provisioned and synced; a later plan releases it and the standby is destroyed."""
    client = temporal_env.client
    request = local_service.request
    spec = ProtectionSpec(request.instance_id, "local", 3, request.spec.primary_port,
                          request.spec.shadow_port, request.spec.router_port, standing_shadow=False)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await start_protection(client, spec, task_queue=task_queue)
            watcher = None
            try:
                await _until(handle, lambda s: s.phase == "unshadowed")
                assert not _listening(request.spec.shadow_port)
                watcher = await _watch(client, task_queue, GRANT)
                status = await _until(handle, lambda s: s.phase == "protected"
                                      and s.shadow_healthy)
                assert _listening(request.spec.shadow_port)
                assert any("Shadow wanted" in line for line in status.log), status.log
                await watcher.terminate("next plan")
                watcher = await _watch(client, task_queue, RELEASE)
                status = await _until(handle, lambda s: s.phase == "unshadowed")
                assert not status.shadow_healthy and not _listening(request.spec.shadow_port)
                assert any("shadow released" in line for line in status.log), status.log
            finally:
                if watcher is not None:
                    await watcher.terminate("test over")
                await handle.terminate("test over")
