"""The fleet watcher watches AWS protections: CloudWatch metrics (in a moto_server process)
feed the model, and EC2 scheduled events become ``report_event`` signals, each sent once.

The protection is a real ``InstanceProtectionWorkflow`` started from an AWS spec with tier 3
and no standing shadow: it runs unshadowed (a shadow only on demand), so it needs neither the
pulumi-aws plugin nor a provisioned shadow, and the watcher finds it the way it finds every
protection (visibility, spec in the memo). The fleet budget allows no shadow, so a rising
score never asks for one. moto invents no EC2 metrics and cannot schedule EC2 events: the
test puts the metrics, and adds a scheduled event to moto's real DescribeInstanceStatus
answer with a botocore hook on the worker's EC2 client (the shape AWS documents).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.policy import FleetBudget, Policy
from contracts.shadow import PlatformRequest
from contracts.spec import ProtectionSpec, spec_from_dict
from contracts.watch import ShadowBudget, WatchFleetInput
from infra.aws.clients import AwsClients
from infra.aws.discovery import ROLE_TAG
from infra.aws.factory import clients_for
from infra.aws.metrics import CloudWatchMetricsCollector, read_many
from infra.aws.observer import AwsObserver, AwsTarget
from infra.platform import ALIVE, DOWN
from tests.infra.aws.conftest import (
    REGION,
    World,
    empty_account,
    point_boto3_at,
    simulate_shadow_stack,
)
from tests.infra.aws.conftest import moto_url as moto_url
from tests.infra.aws.conftest import world as world
from workers.protect import ensure_fleet_watcher, start_protection
from workers.registry import new_worker
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow


@pytest.fixture
def clients(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> AwsClients:
    """An empty moto account; boto3's own variables point the in-process worker at it."""
    point_boto3_at(moto_url, monkeypatch)
    return empty_account(moto_url)


def _spec(world: World, instance_id: str = "orders-db",
          ec2_instance_id: str | None = None) -> ProtectionSpec:
    return spec_from_dict({
        "instance_id": instance_id, "platform": "aws", "tier": 3, "standing_shadow": False,
        "policy": {"advisory": True},
        "aws": {"ec2_instance_id": ec2_instance_id or world.primary_id, "region": REGION,
                "shadow_subnet_id": world.other_subnet,
                "dns": {"hosted_zone_id": world.zone_id, "record_name": "db.example.com"}},
    })


def _watch(**overrides: Any) -> WatchFleetInput:
    values: dict[str, Any] = {
        "sample_interval_s": 1.0, "discovery_interval_s": 1.0, "max_duration_s": 60,
        "metrics_period_s": 1, "events_interval_s": 1.0,
        "budget": FleetBudget(advisory=True), "shadow_budget": ShadowBudget(max_shadows=0),
    }
    values.update(overrides)
    return WatchFleetInput(**values)


def _located(observer: AwsObserver, spec: ProtectionSpec) -> AwsTarget | None:
    """Locate one protection; what the observer found for it (``None``: not found)."""
    observer.locate({spec.instance_id: PlatformRequest(spec)})
    return observer.targets.get(spec.instance_id)


def _put_second(clients: AwsClients, world: World, at: datetime, load: float) -> None:
    """One second of metrics at ``load`` (0..1): CPU, memory and EBS latency rise with it."""
    instance = [{"Name": "InstanceId", "Value": world.primary_id}]
    volume = [{"Name": "VolumeId", "Value": world.data_volume_id}]
    ebs = {"VolumeTotalReadTime": 0.05 + 2.0 * load, "VolumeTotalWriteTime": 0.05 + 2.0 * load,
           "VolumeReadOps": 50.0, "VolumeWriteOps": 50.0}  # 1 ms .. 41 ms per operation
    data = [("AWS/EC2", "CPUUtilization", instance, 10.0 + 89.0 * load),
            ("CWAgent", "mem_used_percent", instance, 30.0 + 69.0 * load),
            *[("AWS/EBS", name, volume, value) for name, value in ebs.items()]]
    for namespace, name, dims, value in data:
        clients.cloudwatch.put_metric_data(Namespace=namespace, MetricData=[{
            "MetricName": name, "Dimensions": dims, "Value": value, "Timestamp": at,
            "StorageResolution": 1}])


async def _watcher_samples_after(watcher: WorkflowHandle[Any, Any], rounds: int) -> int:
    """Wait until the watcher's activity has run at least ``rounds`` more sampling rounds
    (its runs are bounded by ``max_duration_s``: the count comes back in each result)."""
    from contracts.watch import WatchFleetResult

    async def completed() -> list[WatchFleetResult]:
        results = []
        async for event in watcher.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                payloads = event.activity_task_completed_event_attributes.result.payloads
                results += await watcher._client.data_converter.decode(
                    payloads, [WatchFleetResult])
        return results

    before = len(await completed())
    async with asyncio.timeout(90):
        while True:
            after = await completed()
            if len(after) > before and sum(r.samples for r in after[before:]) >= rounds:
                return sum(r.samples for r in after[before:])
            await asyncio.sleep(0.5)


async def _signals(handle: WorkflowHandle[Any, Any], name: str) -> list[dict[str, Any]]:
    found = []
    async for event in handle.fetch_history_events():
        attributes = event.workflow_execution_signaled_event_attributes
        if (event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                and attributes.signal_name == name):
            found.append(json.loads(attributes.input.payloads[0].data))
    return found


async def test_cloudwatch_metrics_reach_the_protection_as_risk(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    clients: AwsClients, world: World,
) -> None:
    """CPU, memory and EBS latency rising in CloudWatch raise the score the watcher reports:
    report_risk signals arrive with rising scores for the primary's node, and no more of them
    than CloudWatch had datapoints (a datapoint read twice is not a second reading)."""
    client = temporal_env.client
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await start_protection(client, _spec(world), task_queue=task_queue)
            watcher = await ensure_fleet_watcher(client, task_queue=task_queue, request=_watch())
            datapoints = 0
            async with asyncio.timeout(90):
                while True:
                    now = datetime.now(UTC).replace(microsecond=0)
                    load = min(1.0, datapoints / 12)
                    await asyncio.to_thread(_put_second, clients, world, now, load)
                    datapoints += 1
                    reports = await _signals(handle, "report_risk")
                    if load >= 1.0 and len(reports) >= 2 and \
                            reports[-1]["readiness_score"] - reports[0]["readiness_score"] >= 20:
                        break
                    await asyncio.sleep(1.0 - time.time() % 1.0 + 0.05)  # next second
            status = await handle.query(InstanceProtectionWorkflow.status)
            await watcher.terminate("test over")
            await handle.terminate("test over")
    assert status.phase == "unshadowed" and status.readiness_score is not None
    assert status.readiness_score == pytest.approx(reports[-1]["readiness_score"])
    assert {report["node"] for report in reports} == {"orders-db"}
    # Advisory: a migration is only recommended (the protection notes it), never asked for.
    assert all(report["decision"] == "hold" or report["reason"].startswith("Recommending")
               for report in reports), reports
    assert status.cutovers == 0
    assert len(reports) <= datapoints


def _add_retirement(world: World) -> Any:
    """A botocore hook adding an instance-retirement event to moto's DescribeInstanceStatus
    answer for the primary, as AWS would list it."""
    def hook(parsed: dict[str, Any], **_: Any) -> None:
        for status in parsed.get("InstanceStatuses", []):
            if status["InstanceId"] == world.primary_id:
                status["Events"] = [{
                    "InstanceEventId": "instance-event-0d59937288b749b32",
                    "Code": "instance-retirement",
                    "Description": "The instance is running on degraded hardware",
                    "NotBefore": datetime.now(UTC) + timedelta(days=3),
                }]
    return hook


async def test_a_scheduled_event_is_reported_once(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    clients: AwsClients, world: World,
) -> None:
    """An EC2 instance-retirement event, polled every second for several seconds and across
    a restart of the watcher activity, reaches the protection as exactly one report_event
    (kind, detail, severity 1 for a high-risk event)."""
    client = temporal_env.client
    statuses = clients.ec2.describe_instance_status(InstanceIds=[world.primary_id])
    assert not statuses["InstanceStatuses"][0].get("Events")  # moto schedules none itself
    ec2 = clients_for(REGION).ec2  # the worker's client (boto3 reads AWS_ENDPOINT_URL)
    hook = _add_retirement(world)
    ec2.meta.events.register("after-call.ec2.DescribeInstanceStatus", hook)
    try:
        with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
            async with new_worker(client, settings, pool, task_queue=task_queue):
                handle = await start_protection(client, _spec(world), task_queue=task_queue)
                # Two short watcher runs: the second starts from the first's result.
                watcher = await ensure_fleet_watcher(client, task_queue=task_queue,
                                                     request=_watch(max_duration_s=4))
                async with asyncio.timeout(60):
                    while not await _signals(handle, "report_event"):
                        await asyncio.sleep(0.5)
                    runs = 0
                    while runs < 2:  # the activity ran again after the event was sent
                        runs = sum([1 async for e in watcher.fetch_history_events()
                                    if e.event_type ==
                                    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED])
                        await asyncio.sleep(0.5)
                events = await _signals(handle, "report_event")
                status = await handle.query(InstanceProtectionWorkflow.status)
                await watcher.terminate("test over")
                await handle.terminate("test over")
    finally:
        ec2.meta.events.unregister("after-call.ec2.DescribeInstanceStatus", hook)
    assert len(events) == 1, events
    assert events[0]["kind"] == "instance-retirement" and events[0]["severity"] == 1.0
    assert world.primary_id in events[0]["detail"] and "degraded" in events[0]["detail"]
    assert status.events_seen == 1


async def test_one_datapoint_is_one_reading(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    clients: AwsClients, world: World,
) -> None:
    """CloudWatch keeps answering with its latest datapoint until a newer one exists; the
    watcher scores it once. With a policy that migrates after two readings over a threshold
    of 0, one datapoint read for several seconds must still be one reading: hold."""
    client = temporal_env.client
    spec = _spec(world)
    spec.policy = Policy(threshold=0.0, consecutive_readings=2)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await start_protection(client, spec, task_queue=task_queue)
            await asyncio.to_thread(_put_second, clients, world, datetime.now(UTC), 1.0)
            watcher = await ensure_fleet_watcher(client, task_queue=task_queue,
                                                 request=_watch(budget=FleetBudget(),
                                                                max_duration_s=4))
            async with asyncio.timeout(60):
                while not await _signals(handle, "report_risk"):
                    await asyncio.sleep(0.5)
            # Reads of the same datapoint for as long as the watcher samples 6 more rounds.
            samples = await _watcher_samples_after(watcher, 6)
            reports = await _signals(handle, "report_risk")
            await watcher.terminate("test over")
            await handle.terminate("test over")
    assert [report["decision"] for report in reports] == ["hold"], reports
    assert samples >= 6


def test_fleet_reads_share_calls_and_keep_instances_apart(
    clients: AwsClients, world: World,
) -> None:
    """120 instances' queries (600, over GetMetricData's 500 per call) are read in two calls,
    and each instance gets its own CPU back."""
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    ids = [f"i-{index:017x}" for index in range(120)]
    for index, ec2_id in enumerate(ids):
        clients.cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=[{
            "MetricName": "CPUUtilization", "Value": float(index % 100), "Timestamp": at,
            "Dimensions": [{"Name": "InstanceId", "Value": ec2_id}]}])
    collectors = [CloudWatchMetricsCollector(clients.cloudwatch, f"db{index}", ec2_id,
                                             id_prefix=f"q{index}_")
                  for index, ec2_id in enumerate(ids)]
    calls: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        calls.append(len(params["MetricDataQueries"]))

    clients.cloudwatch.meta.events.register("provide-client-params.cloudwatch.GetMetricData",
                                            count)
    readings = read_many(clients.cloudwatch, collectors)
    assert calls == [500, 100]
    assert [r.sample.cpu_percent for r in readings] == [float(i % 100) for i in range(120)]
    assert readings[7].sample.instance_id == "db7" and readings[7].sample.memory_percent is None
    with pytest.raises(ValueError, match="id_prefix"):
        read_many(clients.cloudwatch, [collectors[0], collectors[0]])


def test_the_watched_instance_follows_the_role_tags(
    clients: AwsClients, world: World,
) -> None:
    """Before any cutover the spec's instance (and its /dev/sdf volume) is read; once a
    cutover has labelled the shadow primary, the shadow is; a missing instance is left out."""
    spec = _spec(world)
    watcher = AwsObserver(lambda region: clients)
    shadow_id = simulate_shadow_stack(clients, world)
    before = _located(watcher, spec)
    assert before is not None
    assert (before.ec2_instance_id, before.node) == (world.primary_id, "orders-db")
    assert before.volume_ids == (world.data_volume_id,)
    clients.ec2.create_tags(Resources=[world.primary_id],
                            Tags=[{"Key": ROLE_TAG, "Value": "fenced"}])
    clients.ec2.create_tags(Resources=[shadow_id], Tags=[{"Key": ROLE_TAG, "Value": "primary"}])
    after = _located(watcher, spec)
    assert after is not None
    assert (after.ec2_instance_id, after.node) == (shadow_id, "orders-db-shadow")
    gone = _spec(world, "other-db", "i-0123456789abcdef0")
    assert watcher.locate({"other-db": PlatformRequest(gone)}) == {}


def test_located_instances_carry_their_ec2_state_for_failover(
    clients: AwsClients, world: World,
) -> None:
    """What the failover rule reads at discovery: whether the serving instance runs (its
    liveness, told once per locate), and whether the shadow's does; a terminated primary is
    still located (and down)."""
    spec = _spec(world)
    request = PlatformRequest(spec)
    watcher = AwsObserver(lambda region: clients)

    def observe() -> tuple[str, str | None, bool]:
        (located,) = watcher.locate({"orders-db": request}).values()
        seen = watcher.liveness(request, located)
        assert seen is not None and watcher.liveness(request, located) is None  # told once
        return located.identity, seen.state, watcher.standby_ready(request, located)

    assert observe() == (world.primary_id, ALIVE, False)  # no shadow yet
    shadow_id = simulate_shadow_stack(clients, world)
    assert observe() == (world.primary_id, ALIVE, True)
    clients.ec2.stop_instances(InstanceIds=[shadow_id])
    assert observe() == (world.primary_id, ALIVE, False)
    clients.ec2.start_instances(InstanceIds=[shadow_id])
    clients.ec2.stop_instances(InstanceIds=[world.primary_id])
    assert observe() == (world.primary_id, DOWN, True)
    clients.ec2.terminate_instances(InstanceIds=[world.primary_id])
    assert observe()[:2] == (world.primary_id, DOWN)


def test_located_roles_prefer_the_running_instance_when_tags_are_doubled(
    clients: AwsClients, world: World,
) -> None:
    """A stopped old shadow beside its running replacement (same node tag), and a primary that
    was already stopped when it was failed over (a cutover retags only a running node, so both
    carry ``primary``): the running instances are the ones that count."""
    spec = _spec(world)
    watcher = AwsObserver(lambda region: clients)
    shadow_id = simulate_shadow_stack(clients, world)
    stale = simulate_shadow_stack(clients, world)  # listed after the running one
    clients.ec2.stop_instances(InstanceIds=[stale])
    found = _located(watcher, spec)
    assert found is not None and found.standby_running

    clients.ec2.stop_instances(InstanceIds=[world.primary_id])
    for instance in (world.primary_id, shadow_id):
        clients.ec2.create_tags(Resources=[instance], Tags=[{"Key": ROLE_TAG, "Value": "primary"}])
    serving = _located(watcher, spec)
    assert serving is not None
    assert (serving.ec2_instance_id, serving.running) == (shadow_id, True)
