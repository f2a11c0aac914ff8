"""The real CutoverWorkflow on the AWS platform, against a moto_server process.

The two EC2 instances are moto instances whose ``shadowshift:endpoint`` tags point at a real
local PostgreSQL primary and its streaming standby (provisioned as in the local tests), so the
cutover moves real data while ALB forward weights, Route 53 weighted records, role tags and
instance state go through moto. Clients resolve the weighted record on every (re)connect, as
with a zero TTL. What moto does not emulate (traffic through the ALB, resolver caching, the
software on a stopped instance) is listed in docs/aws/README.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Iterator

import psycopg
import pulumi
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.cutover import CutoverInput, cutover_workflow_id
from contracts.policy import PolicyChange
from contracts.protection import ProtectionState
from contracts.shadow import PlatformRequest
from contracts.watch import WatchFleetInput
from infra.aws.clients import AwsClients
from infra.aws.discovery import ROLE_TAG
from infra.aws.stack_config import recorded_weights
from infra.pulumi_engine import StackDriver
from tests.conftest import LocalService, acked_after, polled
from tests.infra.aws.conftest import empty_account, moto_server, point_boto3_at
from tests.infra.aws.pg_world import (
    PgWorld,
    ResolvingEndpoint,
    alb_weights,
    build_pg_world,
    dns_weights,
)
from tests.workflows.test_cutover import Protected, protect, run_cutover
from tests.workflows.test_cutover_crash import ActivityWorkers, _wait_until_terminated
from tests.workflows.test_cutover_crash import activity_workers as activity_workers
from workers.protect import ensure_fleet_watcher
from workers.registry import new_worker
from workers.settings import Settings
from workers.workload import Writer, missing_acked
from workflows.cutover import CutoverWorkflow
from workflows.protection import InstanceProtectionWorkflow


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """One moto_server process for this module."""
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> AwsClients:
    """An empty moto account; boto3's own variables point the worker's clients at it."""
    point_boto3_at(moto_url, monkeypatch)
    return empty_account(moto_url)


async def _on_aws(
    service: LocalService, settings: Settings, clients: AwsClients, tier: int
) -> tuple[Protected, PgWorld, PlatformRequest]:
    """A streaming pair at ``tier``, its moto world, and the AWS request for the workflow."""
    protected = await protect(service, settings, tier)
    local = service.spec
    world = build_pg_world(clients, local.instance_id, local.primary_port, local.shadow_port)
    return protected, world, world.request(tier)


def _role(clients: AwsClients, ec2_id: str) -> str:
    tags = clients.ec2.describe_tags(Filters=[
        {"Name": "resource-id", "Values": [ec2_id]}, {"Name": "key", "Values": [ROLE_TAG]},
    ])["Tags"]
    return str(tags[0]["Value"]) if tags else ""


def _state(clients: AwsClients, ec2_id: str) -> str:
    reservations = clients.ec2.describe_instances(InstanceIds=[ec2_id])["Reservations"]
    return str(reservations[0]["Instances"][0]["State"]["Name"])


async def _first_write_after(writer: Writer, moment: float, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(t > moment for t in writer.stats.ack_times):
        assert time.monotonic() < deadline, "no write was acknowledged after the cutover"
        await asyncio.sleep(0.1)


def _weights_program() -> None:
    """Stands in for the AWS shadow program (no AWS provider plugin here): it keeps the
    weights config, which is what a later ``up`` of the real program would read."""
    raw = pulumi.Config("shadowshift").get("weights")
    pulumi.export("weights", json.loads(raw) if raw else {})


async def test_planned_cutover_on_aws_moves_weights_and_data(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, aws: AwsClients, stack_driver: StackDriver,
) -> None:
    """Planned, tier 1, under writes: ALB and Route 53 send everything to the shadow (read
    back with boto3), the stack config records it, every acknowledged write is on the new
    primary, writes resume there, and no moment shows two writable primaries."""
    protected, world, request = await _on_aws(local_service, settings, aws, tier=1)
    primary, shadow = world.nodes
    stack = f"aws-shadow-{request.instance_id}"
    await asyncio.to_thread(stack_driver.up, stack, _weights_program)
    with (
        Writer(ResolvingEndpoint(aws, world), rate=60) as writer,  # type: ignore[arg-type]
        protected.monitor() as monitor,
    ):
        await acked_after(writer)
        result = await run_cutover(temporal_env.client, settings, task_queue,
                                   CutoverInput(request, reason="maintenance"))
        ended = time.monotonic()
        await _first_write_after(writer, ended)
    assert result.outcome == "completed", result.detail
    assert (result.former_primary, result.primary) == (primary, shadow)
    assert result.possible_loss_bytes == 0
    assert {"fence_primary", "catch_up", "promote", "shift_traffic", "verify"} <= set(
        result.step_ms
    )
    assert alb_weights(aws, world) == {primary: 0, shadow: 100}
    assert dns_weights(aws, world) == {primary: 0, shadow: 100}
    assert recorded_weights(stack_driver, stack) == {primary: 0, shadow: 100}
    assert (_role(aws, world.primary_ec2), _role(aws, world.shadow_ec2)) == ("fenced", "primary")
    assert _state(aws, world.primary_ec2) == "running"  # fenced in the database, kept to rejoin
    stats = writer.stats
    assert len(stats.acked_ids) > 50
    assert missing_acked(local_service.shadow, stats.acked_ids) == []
    assert monitor.report.samples > 100 and monitor.report.split_brain_observations == 0
    with local_service.primary.endpoint.connect() as conn:
        row = conn.execute("SELECT current_setting('default_transaction_read_only')").fetchone()
    assert row == ("on",)
    print(f"AWS planned cutover: steps {result.step_ms}, failed client ops {stats.failed_ops}")
    protected.platform.close()


async def test_stuck_shadow_compensates_weights_back_on_aws(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, aws: AwsClients,
) -> None:
    """The shadow's WAL replay is paused, so it can never reach the fenced primary's final
    position: catch-up fails before promotion, and the saga puts ALB and Route 53 weights,
    the role tag and the primary's writability back; writes resume with nothing lost."""
    protected, world, request = await _on_aws(local_service, settings, aws, tier=1)
    primary, shadow = world.nodes
    with local_service.shadow.connect() as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    with (
        Writer(ResolvingEndpoint(aws, world), rate=60) as writer,  # type: ignore[arg-type]
        protected.monitor() as monitor,
    ):
        await acked_after(writer)
        result = await run_cutover(temporal_env.client, settings, task_queue,
                                   CutoverInput(request, catch_up_timeout_s=1.5))
        ended = time.monotonic()
        await _first_write_after(writer, ended)
    assert result.outcome == "compensated", result
    assert "behind" in result.detail and result.primary == primary
    assert alb_weights(aws, world) == {primary: 100, shadow: 0}
    assert dns_weights(aws, world) == {primary: 100, shadow: 0}
    assert (_role(aws, world.primary_ec2), _role(aws, world.shadow_ec2)) == ("primary", "shadow")
    with local_service.shadow.connect() as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    assert missing_acked(local_service.primary.endpoint, writer.stats.acked_ids) == []
    assert monitor.report.split_brain_observations == 0
    protected.platform.close()


async def test_emergency_cutover_on_aws_with_the_primary_instance_stopped(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, aws: AwsClients,
) -> None:
    """The primary instance stops (EC2 stop in moto; its PostgreSQL is killed with -9, as the
    machine's software dies with it) under tier-1 writes: the emergency cutover fences at the
    routers, promotes the shadow, and every acknowledged write is on it."""
    protected, world, request = await _on_aws(local_service, settings, aws, tier=1)
    primary, shadow = world.nodes
    with Writer(ResolvingEndpoint(aws, world), rate=60) as writer:  # type: ignore[arg-type]
        await acked_after(writer)
        failed_at = time.monotonic()
        aws.ec2.stop_instances(InstanceIds=[world.primary_ec2])
        local_service.primary.kill()
        result = await run_cutover(
            temporal_env.client, settings, task_queue,
            CutoverInput(request, mode="emergency", reason="instance stopped"),
        )
        await _first_write_after(writer, failed_at)
    assert result.outcome == "completed", result.detail
    assert result.primary == shadow and result.possible_loss_bytes == 0
    assert "fence_router" in result.step_ms and "stop_primary" in result.step_ms
    assert alb_weights(aws, world) == {primary: 0, shadow: 100}
    assert dns_weights(aws, world) == {primary: 0, shadow: 100}
    assert _state(aws, world.primary_ec2) == "stopped" and _role(aws, world.shadow_ec2) == "primary"
    assert missing_acked(local_service.shadow, writer.stats.acked_ids) == []
    with pytest.raises(psycopg.OperationalError):
        local_service.primary.endpoint.connect(timeout_s=1).close()
    protected.platform.close()


async def test_the_fleet_watcher_fails_over_a_stopped_aws_primary(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, aws: AwsClients, caplog: pytest.LogCaptureFixture,
) -> None:
    """The serving EC2 instance stops under tier-1 writes (its PostgreSQL killed with -9): the
    fleet watcher reads the state at discovery; while the protection is advisory it only
    logs, once advisory is off it asks for an emergency cutover, which moves ALB and Route 53
    to the shadow with no acknowledged write lost."""
    protected, world, _ = await _on_aws(local_service, settings, aws, tier=1)
    primary, shadow = world.nodes
    # Scores never act here (threshold 100, 100 readings): only the failover rule can.
    spec = world.spec(1, policy={"advisory": True, "failover_after_s": 3, "threshold": 100,
                                 "consecutive_readings": 100})
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=300)
    client = temporal_env.client
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            # Started as protected (the AWS shadow program needs a provider plugin not here).
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run,
                args=[spec, ProtectionState(spec=spec, phase="protected", shadow_healthy=True)],
                id=spec.workflow_id, task_queue=task_queue)
            watcher = await ensure_fleet_watcher(client, task_queue=task_queue, request=watch)
            with Writer(ResolvingEndpoint(aws, world), rate=60) as writer:  # type: ignore[arg-type]
                aws.ec2.stop_instances(InstanceIds=[world.primary_ec2])
                local_service.primary.kill()
                async with asyncio.timeout(60):  # the watcher judged the outage: it only logged
                    while "advisory protection, so no failover" not in caplog.text:
                        await asyncio.sleep(0.2)
                status = await handle.query(InstanceProtectionWorkflow.status)
                assert status.cutovers == 0 and status.phase == "protected", "advisory: no act"
                await handle.execute_update(InstanceProtectionWorkflow.set_policy,
                                            PolicyChange(advisory=False))
                changed_at = time.monotonic()
                async with asyncio.timeout(90):
                    while status.cutovers == 0:
                        await asyncio.sleep(0.25)
                        status = await handle.query(InstanceProtectionWorkflow.status)
                await _first_write_after(writer, changed_at, timeout_s=30)
            await watcher.terminate("test over")
            await handle.terminate("test over")
    assert any(f"EC2 instance {world.primary_ec2} has not been running" in line
               for line in status.log), status.log
    assert status.primary_node == shadow
    assert alb_weights(aws, world) == {primary: 0, shadow: 100}
    assert dns_weights(aws, world) == {primary: 0, shadow: 100}
    assert _role(aws, world.shadow_ec2) == "primary"
    assert missing_acked(local_service.shadow, writer.stats.acked_ids) == []
    protected.platform.close()


async def test_worker_sigkilled_inside_the_aws_switch_over_resumes(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, aws: AwsClients, activity_workers: ActivityWorkers,
) -> None:
    """The activity worker (``python -m workers.main``, reaching moto through boto3's own
    variables) is SIGKILLed inside ``switch_over`` right after the database fence ended client
    sessions; the retry on a new worker re-runs the idempotent AWS steps and completes."""
    protected, world, request = await _on_aws(local_service, settings, aws, tier=2)
    primary, shadow = world.nodes
    client = temporal_env.client
    activity_workers.start()
    await polled(client, activity_workers.task_queue)  # the window excludes its start-up
    watcher = psycopg.connect(local_service.primary.endpoint.conninfo(), autocommit=True)
    with (
        Writer(ResolvingEndpoint(aws, world), rate=60) as writer,  # type: ignore[arg-type]
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        async with Worker(client, task_queue=task_queue, workflows=[CutoverWorkflow],
                          activities=[], activity_executor=pool):
            handle = await client.start_workflow(
                CutoverWorkflow.run,
                CutoverInput(request, activity_task_queue=activity_workers.task_queue),
                id=cutover_workflow_id(request.instance_id), task_queue=task_queue,
            )
            await asyncio.to_thread(_wait_until_terminated, watcher)
            activity_workers.kill()
            activity_workers.start()
            result = await asyncio.wait_for(handle.result(), timeout=120)
    assert result.outcome == "completed", result.detail
    assert alb_weights(aws, world) == {primary: 0, shadow: 100}
    assert dns_weights(aws, world) == {primary: 0, shadow: 100}
    assert (_role(aws, world.primary_ec2), _role(aws, world.shadow_ec2)) == ("fenced", "primary")
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) >= 2, "switch_over was expected to be retried after the kill"
    assert missing_acked(local_service.shadow, writer.stats.acked_ids) == []
    protected.platform.close()


async def test_aws_cutover_naming_a_missing_listener_is_refused(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str, aws: AwsClients,
) -> None:
    """A well-formed listener ARN that does not exist: preflight refuses the cutover, naming
    the spec field, and no weight or tag changes (no database is needed to get there)."""
    world = build_pg_world(aws, "orders-db", 5432, 5433)
    primary, shadow = world.nodes
    missing = ("arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/db/"
               "0123456789abcdef/0123456789abcdef")
    alb = {**world.platform_spec()["alb"], "listener_arn": missing}
    request = world.request(1, alb=alb)
    with pytest.raises(WorkflowFailureError) as failed:
        await run_cutover(temporal_env.client, settings, task_queue, CutoverInput(request))
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "CutoverRejected"
    assert "alb.listener_arn" in cause.message and "does not exist" in cause.message
    assert alb_weights(aws, world) == {primary: 100, shadow: 0}
    assert dns_weights(aws, world) == {primary: 100, shadow: 0}
    assert (_role(aws, world.primary_ec2), _role(aws, world.shadow_ec2)) == ("primary", "shadow")
