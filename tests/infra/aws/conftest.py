"""A real ``moto_server`` process for the boto3 paths, and a small AWS world inside it.

The server runs once per session on a free port; every test starts from an empty account
(``/moto-api/reset``). The world holds what a protected service has before ShadowShift arrives:
a VPC with subnets in two zones, the primary with a data volume, an ALB listener forwarding to
the primary's target group, a hosted zone with the primary's weighted record.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from infra.aws.clients import AwsClients, AwsConnectionConfig
from infra.aws.discovery import NODE_TAG
from infra.aws.spec import AlbRoutingSpec, AwsShadowSpec, DnsRoutingSpec
from infra.local.ports import free_port

REGION = "eu-west-1"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def start_moto(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``moto_server`` on a free port and wait until it answers."""
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    env = {**os.environ, **(extra_env or {})}
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)


def stop_moto(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by :func:`start_moto` (and reap it)."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A ``moto_server`` process for the block, stopped at its end; yields its URL."""
    process, url = start_moto()
    try:
        yield url
    finally:
        stop_moto(process)


def make_clients(url: str, **credentials: str) -> AwsClients:
    """Clients pointed at ``url`` with fake (or given) credentials and few retries."""
    session = boto3.Session(region_name=REGION, **(credentials or FAKE_CREDENTIALS))
    config = AwsConnectionConfig(region=REGION, endpoint_url=url, max_attempts=2)
    return AwsClients(config, session=session)


def empty_account(url: str) -> AwsClients:
    """Reset the moto server at ``url`` to an empty account (``/moto-api/reset``); clients on it."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    return make_clients(url)


def point_boto3_at(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set boto3's own variables, so clients a worker builds from its environment reach ``url``
    (in-process workers, and subprocess workers started afterwards)."""
    for name, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)


_IMAGES: dict[str, str] = {}


def some_image(clients: AwsClients) -> str:
    """One of moto's built-in AMIs (listing them takes seconds, so once per server)."""
    url = str(clients.config.endpoint_url)
    if url not in _IMAGES:
        images = clients.ec2.describe_images(Filters=[{"Name": "name", "Values": ["amzn2-ami-*"]}])
        _IMAGES[url] = images["Images"][0]["ImageId"]
    return _IMAGES[url]


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """One moto server for the session, stopped at the end."""
    with moto_server() as url:
        yield url


@pytest.fixture
def clients(moto_url: str) -> AwsClients:
    """Clients on an empty moto account."""
    return empty_account(moto_url)


@dataclass
class World:
    """Ids of what exists before ShadowShift provisions anything."""

    vpc_id: str
    primary_subnet: str
    other_subnet: str
    primary_id: str
    data_volume_id: str
    listener_arn: str
    primary_tg: str
    shadow_tg: str
    zone_id: str

    def spec(self, **overrides: object) -> AwsShadowSpec:
        """A spec protecting the world's primary, shadow in the other zone."""
        values: dict[str, object] = {
            "instance_id": "orders-db",
            "ec2_instance_id": self.primary_id,
            "region": REGION,
            "shadow_subnet_id": self.other_subnet,
            "dns": DnsRoutingSpec(hosted_zone_id=self.zone_id, record_name="db.example.com"),
            "alb": AlbRoutingSpec(
                listener_arn=self.listener_arn,
                primary_target_group_arn=self.primary_tg,
                shadow_target_group_arn=self.shadow_tg,
            ),
        }
        values.update(overrides)
        return AwsShadowSpec(**values)  # type: ignore[arg-type]


@pytest.fixture
def world(clients: AwsClients) -> World:
    """The protected service's AWS resources, before any shadow exists."""
    ec2, elbv2, route53 = clients.ec2, clients.elbv2, clients.route53
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="eu-west-1a")
    subnet_b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24", AvailabilityZone="eu-west-1b")
    primary_subnet, other_subnet = subnet_a["Subnet"]["SubnetId"], subnet_b["Subnet"]["SubnetId"]
    image = some_image(clients)
    primary = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.large",
        SubnetId=primary_subnet,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "orders-db"}]}
        ],
    )["Instances"][0]["InstanceId"]
    volume = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=20, VolumeType="gp3")["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=primary, Device="/dev/sdf")
    lb = elbv2.create_load_balancer(Name="web", Subnets=[primary_subnet, other_subnet])
    lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    groups = [
        elbv2.create_target_group(Name=n, Protocol="HTTP", Port=5432, VpcId=vpc)["TargetGroups"][0][
            "TargetGroupArn"
        ]
        for n in ("db-primary", "db-shadow")
    ]
    elbv2.register_targets(TargetGroupArn=groups[0], Targets=[{"Id": primary}])
    listener = elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[0]}],
    )["Listeners"][0]["ListenerArn"]
    zone = route53.create_hosted_zone(Name="example.com", CallerReference=str(time.time()))
    zone_id = zone["HostedZone"]["Id"].removeprefix("/hostedzone/")
    upsert_record(clients, zone_id, "orders-db", "10.0.1.4", 100)
    return World(
        vpc, primary_subnet, other_subnet, primary, volume, listener, groups[0], groups[1], zone_id
    )


def upsert_record(clients: AwsClients, zone_id: str, node: str, address: str, weight: int) -> None:
    """A weighted A record for ``node`` (what the Pulumi program would create)."""
    record = {
        "Name": "db.example.com",
        "Type": "A",
        "SetIdentifier": node,
        "Weight": weight,
        "TTL": 30,
        "ResourceRecords": [{"Value": address}],
    }
    clients.route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]},
    )


def simulate_shadow_stack(clients: AwsClients, world: World) -> str:
    """Create by boto3 what the shadow program creates (the AWS provider cannot run here)."""
    image = some_image(clients)
    tags = [
        {"Key": NODE_TAG, "Value": "orders-db-shadow"},
        {"Key": "shadowshift:role", "Value": "shadow"},
    ]
    shadow = clients.ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.large",
        SubnetId=world.other_subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]
    clients.elbv2.register_targets(
        TargetGroupArn=world.shadow_tg, Targets=[{"Id": shadow["InstanceId"]}]
    )
    upsert_record(clients, world.zone_id, "orders-db-shadow", shadow["PrivateIpAddress"], 0)
    return str(shadow["InstanceId"])
