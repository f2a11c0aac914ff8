"""A primary that dies without warning: the operator's emergency cutover through the protection.

The model did not see it coming (a kill -9); ``shadowshift cutover --emergency`` sends
``request_cutover`` with ``emergency``: the protection runs the cutover saga in emergency mode
(fenced at the router, the shadow promoted without the primary's help), loses no acknowledged
tier-1 write, and then recovers: the dead former primary is retired and a fresh shadow copied.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts.policy import Policy
from tests.conftest import LocalService, acked_after, with_spec
from tests.workers.cli_helpers import shadowshift
from workers.registry import new_worker
from workers.settings import Settings
from workers.workload import Writer, missing_acked, prepare_table
from workflows.protection import InstanceProtectionWorkflow


async def test_emergency_cutover_of_a_dead_primary_through_the_protection(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    client: Client = temporal_env.client
    conn = ["--address", client.service_client.config.target_host]
    spec = with_spec(local_service.request, tier=1, policy=Policy(advisory=True)).spec
    shadow_node = f"{spec.instance_id}-shadow"
    prepare_table(local_service.router)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, spec,
                id=spec.workflow_id, task_queue=task_queue,
            )
            async with asyncio.timeout(120):
                while (await handle.query(InstanceProtectionWorkflow.status)).phase \
                        != "protected":
                    await asyncio.sleep(0.2)
            with Writer(local_service.router, rate=50) as writer:
                await acked_after(writer)
                killed_at = time.monotonic()
                await asyncio.to_thread(local_service.primary.kill)
                cutover = await shadowshift("cutover", spec.instance_id, "--emergency",
                                            "--reason", "primary died", "--json", *conn)
                assert cutover.returncode == 0, cutover.stderr
                assert json.loads(cutover.stdout)["mode"] == "emergency"
                deadline = time.monotonic() + 10
                while not any(t > killed_at for t in writer.stats.ack_times):
                    assert time.monotonic() < deadline, "no write succeeded after the failover"
                    await asyncio.sleep(0.1)
            assert missing_acked(local_service.shadow, writer.stats.acked_ids) == []
            async with asyncio.timeout(180):
                while not (status := await handle.query(InstanceProtectionWorkflow.status)) \
                        .recoveries or status.phase != "protected":
                    await asyncio.sleep(0.2)
            assert status.cutovers == 1 and status.primary_node == shadow_node
            assert status.recoveries == ["retired"] and status.shadow_healthy
            weights = local_service.haproxy.weights(spec.instance_id)
            assert weights == {spec.instance_id: 0, shadow_node: 100}
            await handle.terminate("test over")
