"""Starting a protection with the plain ``temporal`` CLI behaves like ``shadowshift protect``,
and the Web UI says what a protection is doing (summary, current details, activity
summaries), on real Temporal, PostgreSQL, HAProxy and Pulumi."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.protection import ProtectionApi
from contracts.spec import spec_to_dict
from contracts.watch import WatchFleetInput
from tests.conftest import LocalService
from tests.workflows.test_protection import _cli
from workers.protect import ensure_fleet_watcher, start_protection
from workers.registry import new_worker
from workers.settings import Settings

pytestmark = pytest.mark.integration


async def _phase(handle: WorkflowHandle, phases: set[str], timeout_s: float = 120) -> str:
    async with asyncio.timeout(timeout_s):
        while (phase := (await handle.query(ProtectionApi.status)).phase) not in phases:
            await asyncio.sleep(0.2)
    return phase


async def _start_with_cli(client: Client, spec_file: Path, workflow_id: str,
                          task_queue: str) -> None:
    address = client.service_client.config.target_host
    started = await _cli(address, "workflow", "start", "--type", "InstanceProtectionWorkflow",
                         "--task-queue", task_queue, "--workflow-id", workflow_id,
                         "--input-file", str(spec_file))
    assert started.returncode == 0, started.stderr


@pytest.mark.parametrize(("change", "field"), [
    ({"policy": {"threshold": 150}}, "policy.threshold 150"),
    ({"tier": "two"}, "tier: expected an integer"),
    ({"aws_region": "eu-west-1"}, "aws_region: unknown field"),
    ({"policy": {"treshold": 70}}, "policy.treshold: unknown field"),
])
async def test_an_invalid_spec_from_the_temporal_cli_fails_fast_naming_the_field(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, tmp_path: Path, change: dict[str, object], field: str,
) -> None:
    """A spec file the CLI would refuse fails the workflow at its first step with a
    non-retryable error naming the field; no activity ran, so nothing was created."""
    client = temporal_env.client
    document = {**spec_to_dict(local_service.spec), **change}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(document))
    workflow_id = f"protect-{local_service.instance_id}"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            await _start_with_cli(client, spec_file, workflow_id, task_queue)
            with pytest.raises(WorkflowFailureError) as failed:
                await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 60)
    cause = failed.value.cause
    assert field in str(cause), cause
    assert getattr(cause, "type", None) == "InvalidSpec" and cause.non_retryable
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled = [e for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert scheduled == []
    shadow_home = settings.state_dir / "instances" / local_service.instance_id / "shadow"
    assert not shadow_home.exists()


async def test_a_valid_spec_from_the_temporal_cli_is_provisioned_watched_and_scored(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, tmp_path: Path,
) -> None:
    """Started without any memo, the protection writes its own, so the fleet watcher finds
    it, samples it and scores it; the Web UI shows its phase and latest score in its current
    details, and every activity it ran has a summary."""
    client = temporal_env.client
    spec = local_service.spec
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec_to_dict(spec)))
    watch = WatchFleetInput(sample_interval_s=0.5, discovery_interval_s=1.0,
                            max_duration_s=600)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            await _start_with_cli(client, spec_file, spec.workflow_id, task_queue)
            handle = client.get_workflow_handle(spec.workflow_id)
            await _phase(handle, {"protected"})
            watcher = await ensure_fleet_watcher(client, task_queue=task_queue, request=watch)
            try:
                async with asyncio.timeout(90):
                    while (await handle.query(ProtectionApi.status)).readiness_score is None:
                        await asyncio.sleep(0.5)
                metadata = await handle.query("__temporal_workflow_metadata",
                                              result_type=WorkflowMetadata)
            finally:
                await watcher.terminate("test over")
            memo = await (await handle.describe()).memo()
            await handle.terminate("test over")
    assert memo["spec"]["instance_id"] == spec.instance_id
    details = metadata.current_details
    assert "**Phase:** protected" in details and "**Readiness score:**" in details
    history = await handle.fetch_history()
    summaries = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            (summary,) = await client.data_converter.decode([event.user_metadata.summary])
            summaries.append(summary)
    assert f"provision the shadow of {spec.instance_id}" in summaries
    assert all(summaries), summaries


async def test_the_web_ui_shows_a_summary_and_what_a_cutover_did(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """``shadowshift protect``'s start gives the protection a static summary; after an
    operator's cutover its details name the trigger and the new primary, and the cutover
    child's timeline labels its steps."""
    from contracts.protection import CutoverRequest

    client = temporal_env.client
    spec = local_service.spec
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await start_protection(client, spec, task_queue=task_queue)
            await _phase(handle, {"protected"})
            description = await handle.describe()
            assert await description.static_summary() == (
                f"Protect {spec.instance_id} (local, tier 2)")
            assert "threshold 60" in (await description.static_details() or "")
            await handle.execute_update(ProtectionApi.request_cutover,
                                        CutoverRequest("disk replacement"))
            async with asyncio.timeout(240):
                while not (status := await handle.query(ProtectionApi.status)).recoveries:
                    await asyncio.sleep(0.3)
            metadata = await handle.query("__temporal_workflow_metadata",
                                          result_type=WorkflowMetadata)
            await handle.terminate("test over")
    assert status.last_cutover is not None and status.last_cutover.trigger == "operator"
    assert "triggered by operator" in metadata.current_details
    assert f"→ {spec.instance_id}-shadow" in metadata.current_details
    child = client.get_workflow_handle(f"cutover-{spec.instance_id}")
    assert "cutover of" in (await (await child.describe()).static_summary() or "")
    steps = []
    for event in (await child.fetch_history()).events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            (summary,) = await client.data_converter.decode([event.user_metadata.summary])
            steps.append(summary)
    assert any(s.startswith("switch ") and "promote" in s for s in steps), steps
