"""Route 53's INSYNC wait: off the critical path, and heartbeating where it happens.

moto answers every change INSYNC at once, so these tests put botocore's own ``Stubber`` (AWS's
API answering, not a component of ours) in front of a Route 53 client to play the real
service's PENDING answers.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from datetime import UTC, datetime, timedelta

import boto3
from botocore.stub import Stubber
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from infra.aws.clients import AwsClients
from infra.aws.factory import activity_heartbeat
from infra.aws.fencing import InstanceControl
from infra.aws.platform import AwsPlatform
from infra.aws.spec import DnsRoutingSpec
from infra.aws.stack_config import recorded_dns_change
from infra.aws.traffic import DnsWeights
from infra.pulumi_engine import StackDriver
from tests.infra.aws.conftest import World, simulate_shadow_stack

_ZONE = "Z0123456789ABCDEFGHIJ"
_CHANGE = "/change/C2682N5HXP0BZ4"
_NODES = ("orders-db", "orders-db-shadow")


def _route53() -> tuple[object, Stubber]:
    client = boto3.client(
        "route53", region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, Stubber(client)


def _change(status: str) -> dict[str, object]:
    return {"ChangeInfo": {"Id": _CHANGE, "Status": status, "SubmittedAt": datetime.now(UTC)}}


def _dns(client: object, poll_interval_s: float) -> DnsWeights:
    spec = DnsRoutingSpec(hosted_zone_id=_ZONE, record_name="db.example.com")
    return DnsWeights(client, spec, _NODES, poll_interval_s=poll_interval_s)


def test_set_without_wait_never_asks_for_the_change() -> None:
    """The critical path's UPSERT returns the PENDING change's id and makes no GetChange call
    (the Stubber would refuse an unexpected one)."""
    client, stubber = _route53()
    records = [
        {"Name": "db.example.com.", "Type": "A", "SetIdentifier": node, "Weight": weight,
         "TTL": 30, "ResourceRecords": [{"Value": f"10.0.1.{i}"}]}
        for i, (node, weight) in enumerate(zip(_NODES, (100, 0), strict=True))
    ]
    stubber.add_response("list_resource_record_sets",
                         {"ResourceRecordSets": records, "IsTruncated": False, "MaxItems": "100"})
    stubber.add_response("change_resource_record_sets", _change("PENDING"))
    with stubber:
        change = _dns(client, 0.1).set({"orders-db": 0, "orders-db-shadow": 100}, wait=False)
        stubber.assert_no_pending_responses()
    assert change == _CHANGE


@workflow.defn(sandboxed=False)
class _WaitWorkflow:
    """Runs the wait as an activity with a heartbeat timeout shorter than the wait."""

    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(
            "wait_dns", start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=1), result_type=int,
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_insync_wait_heartbeats_through_a_short_heartbeat_timeout(
    temporal_env: WorkflowEnvironment,
) -> None:
    """PENDING three times then INSYNC, 0.6 s apart (2.4 s in all), inside an activity whose
    heartbeat timeout is 1 s and which may not retry: it completes on its first attempt only
    because every answer heartbeats."""
    client, stubber = _route53()
    for status in ("PENDING", "PENDING", "PENDING", "INSYNC"):
        stubber.add_response("get_change", _change(status), {"Id": _CHANGE})
    beats: list[str] = []

    def heartbeat(progress: str) -> None:
        beats.append(progress)
        activity_heartbeat(progress)

    @activity.defn(name="wait_dns")
    def wait_dns() -> int:
        _dns(client, 0.6).wait_insync(_CHANGE, heartbeat)
        return activity.info().attempt

    queue = f"dns-{uuid.uuid4().hex[:8]}"
    with stubber, concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with Worker(temporal_env.client, task_queue=queue, workflows=[_WaitWorkflow],
                          activities=[wait_dns], activity_executor=pool):
            attempt = await temporal_env.client.execute_workflow(
                _WaitWorkflow.run, id=f"dns-wait-{queue}", task_queue=queue
            )
        stubber.assert_no_pending_responses()
    assert attempt == 1
    assert beats == [f"route53 change {_CHANGE} {s}" for s in
                     ("PENDING", "PENDING", "PENDING", "INSYNC")]


async def test_without_heartbeats_the_same_wait_times_out(
    temporal_env: WorkflowEnvironment,
) -> None:
    """The control: the same PENDING answers with no heartbeat fail the 1 s heartbeat timeout,
    which is what the fence and shift steps met on real AWS before the wait moved."""
    client, stubber = _route53()
    for status in ("PENDING", "PENDING", "PENDING", "INSYNC"):
        stubber.add_response("get_change", _change(status), {"Id": _CHANGE})

    @activity.defn(name="wait_dns")
    def wait_dns() -> int:
        _dns(client, 0.6).wait_insync(_CHANGE, None)
        return activity.info().attempt

    queue = f"dns-{uuid.uuid4().hex[:8]}"
    with stubber, concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with Worker(temporal_env.client, task_queue=queue, workflows=[_WaitWorkflow],
                          activities=[wait_dns], activity_executor=pool):
            try:
                await temporal_env.client.execute_workflow(
                    _WaitWorkflow.run, id=f"dns-wait-{queue}", task_queue=queue
                )
            except WorkflowFailureError as err:
                assert "heartbeat" in str(err.cause.cause).lower() or \
                    "timeout" in repr(err.cause).lower()
            else:
                raise AssertionError("the wait without heartbeats should have timed out")


def test_platform_critical_path_submits_and_the_verify_waits(
    clients: AwsClients, world: World, stack_driver: StackDriver
) -> None:
    """On the AWS platform, fencing and shifting weights make no GetChange call (counted with
    botocore's own event hooks on the moto client); the change id is recorded with the
    weights, and the verify's wait asks for exactly that change, calling ``on_wait``."""
    simulate_shadow_stack(clients, world)
    stack = f"aws-shadow-{world.spec().instance_id}"
    stack_driver.up(stack, lambda: None)
    asked: list[str] = []
    clients.route53.meta.events.register(
        "before-parameter-build.route53.GetChange", lambda params, **_: asked.append(params["Id"])
    )
    beats: list[str] = []
    platform = AwsPlatform(world.spec(), clients, stack_driver,
                           instance_control=InstanceControl(clients.ec2), on_wait=beats.append)
    primary, shadow = world.spec().nodes
    platform.fence_router(primary)
    platform.set_weights({primary: 0, shadow: 100})
    assert asked == []
    change = recorded_dns_change(stack_driver, stack)
    assert change
    later = AwsPlatform(world.spec(), clients, stack_driver,  # verify: a new activity
                        instance_control=InstanceControl(clients.ec2), on_wait=beats.append)
    later.wait_for_dns()
    assert len(asked) == 1 and asked[0].split("/")[-1] == change.split("/")[-1]
    assert beats == [f"route53 change {change} INSYNC"]
