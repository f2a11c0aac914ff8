"""A protection whose spec says ``platform: aws`` runs on the AWS platform (against a
moto_server process), never silently on the local one."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.spec import spec_from_dict
from tests.infra.aws.conftest import (
    REGION,
    empty_account,
    make_clients,
    moto_server,
    point_boto3_at,
)
from workers.registry import new_worker
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow

MISSING_INSTANCE = "i-0123456789abcdef0"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """One moto_server process for this module."""
    with moto_server() as url:
        yield url


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty moto account; boto3's own variables point the in-process worker at it."""
    point_boto3_at(moto_url, monkeypatch)
    empty_account(moto_url)
    return moto_url


def _causes(err: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = err
    while current is not None:
        yield current
        current = current.__cause__ or getattr(current, "cause", None)


async def test_aws_protection_reaches_the_aws_platform(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str, aws_env: str,
) -> None:
    """The provision runs the AWS preflight, which finds no such EC2 instance in the (moto)
    account: the protection fails with that non-retryable error naming the field, and
    nothing was created (no shadow instance, no hosted-zone change)."""
    clients = make_clients(aws_env)
    vpc = clients.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = clients.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24",
                                       AvailabilityZone=f"{REGION}b")["Subnet"]["SubnetId"]
    zone = clients.route53.create_hosted_zone(Name="example.com", CallerReference="t")
    zone_id = zone["HostedZone"]["Id"].removeprefix("/hostedzone/")
    spec = spec_from_dict({"instance_id": "orders-db", "platform": "aws", "tier": 2, "aws": {
        "ec2_instance_id": MISSING_INSTANCE, "region": REGION, "shadow_subnet_id": subnet,
        "dns": {"hosted_zone_id": zone_id, "record_name": "db.example.com"},
    }})
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(temporal_env.client, settings, pool, task_queue=task_queue):
            handle = await temporal_env.client.start_workflow(
                InstanceProtectionWorkflow.run, spec,
                id=f"{spec.workflow_id}-{task_queue}", task_queue=task_queue,
            )
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
    errors = [c for c in _causes(failure.value)
              if isinstance(c, ApplicationError) and c.type == "InvalidRequest"]
    assert errors, repr(failure.value)
    assert errors[0].non_retryable
    assert f"ec2_instance_id {MISSING_INSTANCE!r} does not exist" in errors[0].message
    history = [e async for e in handle.fetch_history_events()]
    attempts = [e for e in history if e.HasField("activity_task_started_event_attributes")]
    assert len(attempts) <= 3, "a non-retryable error must not be retried"
    assert clients.ec2.describe_instances()["Reservations"] == []
    records = clients.route53.list_resource_record_sets(HostedZoneId=zone_id)
    assert {r["Type"] for r in records["ResourceRecordSets"]} == {"NS", "SOA"}
