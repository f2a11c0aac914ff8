"""InstanceProtectionWorkflow on real PostgreSQL, HAProxy, Pulumi and Temporal, driven by the
SDK and by the ``temporal`` CLI exactly as docs/operations.md shows."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from contracts.protection import (
    CutoverRequest,
    ProtectionState,
    ProtectionStatus,
    UnprotectRequest,
)
from contracts.shadow import Capabilities
from contracts.spec import ProtectionSpec, spec_from_dict
from tests.conftest import LocalService, temporal_binary
from workers.registry import new_worker
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow

AWS_SECTION = {
    "ec2_instance_id": "i-0123456789abcdef0", "region": "eu-west-1",
    "shadow_subnet_id": "subnet-0bbbbbbbbbbbbbbbb",
    "dns": {"hosted_zone_id": "Z0123456789ABCDEFGHIJ", "record_name": "db.example.com"},
}


def _spec(service: LocalService) -> ProtectionSpec:
    return service.spec


async def _wait_for_phase(handle: WorkflowHandle, phase: str, timeout_s: float = 120) -> None:
    async with asyncio.timeout(timeout_s):
        while (await handle.query(InstanceProtectionWorkflow.status)).phase != phase:
            await asyncio.sleep(0.2)


async def _cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the temporal CLI without blocking the loop our in-process worker runs on."""
    process = await asyncio.create_subprocess_exec(
        temporal_binary(), *args, "--address", address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return subprocess.CompletedProcess(args, process.returncode or 0, out.decode(), err.decode())


async def test_protect_then_drive_with_messages(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Protection provisions and syncs the shadow, publishes its phase for the Web UI, and
    obeys pause/resume, validated updates and queries from both the SDK and the CLI."""
    client: Client = temporal_env.client
    spec = _spec(local_service)
    address = client.service_client.config.target_host
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, spec, id=spec.workflow_id, task_queue=task_queue,
            )
            await _wait_for_phase(handle, "protected")
            status: ProtectionStatus = await handle.query(InstanceProtectionWorkflow.status)
            assert status.shadow_healthy and status.next_action == "watch"

            # The Web UI's filter finds it by the custom search attribute.
            query = f'ShadowShiftInstance = "{spec.instance_id}" AND ShadowShiftPhase = "protected"'
            async with asyncio.timeout(30):
                while not [w async for w in client.list_workflows(query)]:
                    await asyncio.sleep(0.5)

            # Pause through the CLI, then a cutover request is refused with the reason.
            paused = await _cli(address, "workflow", "signal", "--workflow-id", spec.workflow_id,
                          "--name", "pause")
            assert paused.returncode == 0, paused.stderr
            async with asyncio.timeout(10):
                while not (await handle.query(InstanceProtectionWorkflow.status)).paused:
                    await asyncio.sleep(0.1)
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                            CutoverRequest("test"))
            assert "paused" in str(refused.value.cause)
            await _cli(address, "workflow", "signal", "--workflow-id", spec.workflow_id,
                 "--name", "resume")
            # Every cutover says what asked for it, from a known list.
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                            CutoverRequest("test", trigger="gut feeling"))
            assert "trigger 'gut feeling'" in str(refused.value.cause)

            # A contradictory policy is rejected by the validator, through the CLI.
            bad = await _cli(address, "workflow", "update", "execute", "--workflow-id",
                       spec.workflow_id, "--name", "set_policy",
                       "--input", json.dumps({"threshold": 150}))
            assert bad.returncode != 0 and "policy.threshold 150" in bad.stdout + bad.stderr
            good = await _cli(address, "workflow", "update", "execute", "--workflow-id",
                        spec.workflow_id, "--name", "set_policy",
                        "--input", json.dumps({"threshold": 70, "consecutive_readings": 2}))
            assert good.returncode == 0, good.stderr

            shown = await _cli(address, "workflow", "query", "--workflow-id", spec.workflow_id,
                         "--name", "status")
            assert shown.returncode == 0 and '"phase":"protected"' in shown.stdout
            assert "Policy set: threshold 70" in shown.stdout
            # A partial policy changes only the fields it gives.
            for change in ({"advisory": True}, {"threshold": 65}):
                done = await _cli(address, "workflow", "update", "execute", "--workflow-id",
                                  spec.workflow_id, "--name", "set_policy",
                                  "--input", json.dumps(change))
                assert done.returncode == 0, done.stderr
            policy = (await handle.query(InstanceProtectionWorkflow.status)).policy
            assert policy is not None
            assert (policy.threshold, policy.consecutive_readings, policy.advisory) == (65, 2, True)
            await handle.terminate("test over")


async def test_requested_cutover_moves_traffic_to_the_shadow(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """request_cutover runs the cutover saga as a child: traffic ends on the former shadow.
    The primary has neither wal_log_hints nor checksums, which preflight says with the fix,
    so the former primary is retired (pulumi destroy) and a fresh shadow is copied in its
    place: protected again, with the roles swapped."""
    client: Client = temporal_env.client
    spec = _spec(local_service)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, spec, id=spec.workflow_id, task_queue=task_queue,
            )
            await _wait_for_phase(handle, "protected")
            status = await handle.query(InstanceProtectionWorkflow.status)
            assert any("wal_log_hints = on" in line for line in status.log), status.log
            answer = await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                                 CutoverRequest("test switchover"))
            assert answer == "scheduled"
            with pytest.raises(WorkflowUpdateFailedError):  # one cutover at a time
                await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                            CutoverRequest("again", force=True))
            async with asyncio.timeout(180):
                while not (status := await handle.query(InstanceProtectionWorkflow.status)) \
                        .recoveries:
                    await asyncio.sleep(0.2)
            await _wait_for_phase(handle, "protected")
            status = await handle.query(InstanceProtectionWorkflow.status)
            shadow_node = f"{spec.instance_id}-shadow"
            assert status.cutovers == 1 and status.shadow_healthy
            assert status.recoveries == ["retired"] and status.primary_node == shadow_node
            assert any("cannot be rewound" in line for line in status.log), status.log
            weights = local_service.haproxy.weights(spec.instance_id)
            assert weights == {spec.instance_id: 0, shadow_node: 100}
            await handle.terminate("test over")


async def test_a_degraded_protection_can_be_unprotected(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Degraded (no shadow could be made after a cutover) is not a dead end: unprotect
    destroys whatever of the shadow stack exists and ends the protection."""
    client: Client = temporal_env.client
    spec = _spec(local_service)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            # Provisioning told the protection its platform never stacks the serving primary.
            degraded = ProtectionState(spec=spec, phase="degraded",
                                       capabilities=Capabilities(unprotect_when_degraded=True))
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, args=[spec, degraded],
                id=spec.workflow_id, task_queue=task_queue,
            )
            answer = await handle.execute_update(InstanceProtectionWorkflow.unprotect,
                                                 UnprotectRequest("giving up on it"))
            assert answer == "scheduled"
            await asyncio.wait_for(handle.result(), timeout=120)
            status = await handle.query(InstanceProtectionWorkflow.status)
            assert status.phase == "unprotected"


async def test_a_degraded_aws_protection_refuses_unprotect(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """On AWS a degraded protection's stack may hold the serving primary (the former shadow,
    promoted): its provisioning said so, so unprotect, which destroys the stack, is refused
    with the reason; nothing runs and the protection stays."""
    client: Client = temporal_env.client
    spec = spec_from_dict({"instance_id": "orders-db", "platform": "aws", "tier": 2,
                           "aws": AWS_SECTION})
    degraded = ProtectionState(spec=spec, phase="degraded",
                               capabilities=Capabilities(unprotect_when_degraded=False))
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, args=[spec, degraded],
                id=f"{spec.workflow_id}-{task_queue}", task_queue=task_queue,
            )
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(InstanceProtectionWorkflow.unprotect,
                                            UnprotectRequest("giving up on it"))
            assert "cannot unprotect in phase degraded" in str(refused.value.cause)
            status = await handle.query(InstanceProtectionWorkflow.status)
            assert status.phase == "degraded"
            await handle.terminate("test over")
