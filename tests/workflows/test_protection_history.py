"""Continue-as-new of a protection with messages in flight loses nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts.policy import PolicyChange
from contracts.protection import ExternalEvent, ProtectionState
from tests.conftest import LocalService
from workers.registry import new_worker
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow


async def test_continue_as_new_keeps_state_and_messages(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Signals and an update sent while the history crosses its limit all count, and the
    protection carries its state (phase, policy, log, which node serves) into the new run."""
    client: Client = temporal_env.client
    spec = local_service.spec
    # Already protected: this test is about history, not provisioning.
    # After a cutover: the shadow node serves and the original primary is its shadow.
    state = ProtectionState(spec=spec, phase="protected", shadow_healthy=True,
                            continue_as_new_events=60, cutovers=1,
                            serving_node=f"{spec.instance_id}-shadow",
                            original_home="/srv/original", recoveries=["rejoined"])
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, args=[spec, state], id=spec.workflow_id,
                task_queue=task_queue,
            )
            first_run = (await handle.describe()).run_id
            latest = client.get_workflow_handle(spec.workflow_id)  # follows the chain
            sends = [latest.signal(InstanceProtectionWorkflow.report_event,
                                   ExternalEvent("hardware-warning", f"#{i}"))
                     for i in range(80)]
            update = latest.execute_update(InstanceProtectionWorkflow.set_policy,
                                           PolicyChange(threshold=75))
            await asyncio.gather(*sends)
            applied = await update
            assert applied.threshold == 75
            async with asyncio.timeout(60):
                while True:
                    status = await latest.query(InstanceProtectionWorkflow.status)
                    if (await latest.describe()).run_id != first_run and status.events_seen == 80:
                        break
                    await asyncio.sleep(0.2)
            assert status.phase == "protected" and status.shadow_healthy
            assert status.policy is not None and status.policy.threshold == 75
            assert status.primary_node == f"{spec.instance_id}-shadow"
            assert status.cutovers == 1 and status.recoveries == ["rejoined"]
            await latest.terminate("test over")
