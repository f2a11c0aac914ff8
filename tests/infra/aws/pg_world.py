"""A moto AWS world whose two EC2 instances "run" real local PostgreSQL servers.

moto runs no software, so each emulated instance carries a ``shadowshift:endpoint`` tag with the
address of a real PostgreSQL on this machine (the primary and its streaming standby, provisioned
by the local platform). EC2 state, tags, the ALB listener and the Route 53 records live in
moto; replication, fencing and promotion happen in PostgreSQL. The world is what the AWS shadow
program would have created (the AWS provider plugin cannot run here).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from contracts.shadow import PlatformRequest
from contracts.spec import ProtectionSpec, spec_from_dict, validate_spec
from infra.aws.clients import AwsClients
from infra.aws.discovery import NODE_TAG, ROLE_TAG
from infra.aws.nodes import ENDPOINT_TAG
from infra.local.postgres import PgEndpoint
from tests.infra.aws.conftest import REGION, some_image, upsert_record

RECORD_NAME = "db.example.com"


@dataclass
class PgWorld:
    """Ids of the emulated resources around one PostgreSQL pair."""

    instance_id: str
    primary_ec2: str
    shadow_ec2: str
    ports: dict[str, int]
    """Node → local PostgreSQL port."""
    listener_arn: str
    groups: dict[str, str]
    """Node → target group ARN."""
    zone_id: str
    subnets: tuple[str, str]

    def spec(self, tier: int, /, policy: dict[str, Any] | None = None,
             **overrides: Any) -> ProtectionSpec:
        """The protection spec of this pair on the AWS platform (validated)."""
        return validate_spec(spec_from_dict({
            "instance_id": self.instance_id, "platform": "aws", "tier": tier,
            "policy": policy or {}, "aws": self.platform_spec(**overrides)}))

    def request(self, tier: int, /, **overrides: Any) -> PlatformRequest:
        """The platform request of this pair, with the original roles."""
        return PlatformRequest(self.spec(tier, **overrides))

    def platform_spec(self, **overrides: Any) -> dict[str, Any]:
        """The fields of the spec's ``aws`` section."""
        primary, shadow = self.nodes
        spec: dict[str, Any] = {
            "ec2_instance_id": self.primary_ec2,
            "region": REGION,
            "shadow_subnet_id": self.subnets[1],
            "dns": {"hosted_zone_id": self.zone_id, "record_name": RECORD_NAME},
            "alb": {
                "listener_arn": self.listener_arn,
                "primary_target_group_arn": self.groups[primary],
                "shadow_target_group_arn": self.groups[shadow],
            },
            "postgres": {"user": "postgres", "dbname": "postgres"},
        }
        spec.update(overrides)
        return spec

    @property
    def nodes(self) -> tuple[str, str]:
        """(primary node, shadow node)."""
        return self.instance_id, f"{self.instance_id}-shadow"


def build_pg_world(
    clients: AwsClients, instance_id: str, primary_port: int, shadow_port: int
) -> PgWorld:
    """Two instances in two zones, an ALB forwarding to the primary, weighted records 100/0."""
    ec2, elbv2 = clients.ec2, clients.elbv2
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)[
            "Subnet"
        ]["SubnetId"]
        for i, zone in ((1, "eu-west-1a"), (2, "eu-west-1b"))
    )
    primary_node, shadow_node = instance_id, f"{instance_id}-shadow"
    ports = {primary_node: primary_port, shadow_node: shadow_port}
    tags = {
        primary_node: {"Name": instance_id, ROLE_TAG: "primary"},
        shadow_node: {"Name": f"{instance_id}-shadow", NODE_TAG: shadow_node, ROLE_TAG: "shadow"},
    }
    instances: dict[str, dict[str, Any]] = {}
    for (node, node_tags), subnet in zip(tags.items(), subnets, strict=True):
        node_tags = {**node_tags, ENDPOINT_TAG: f"127.0.0.1:{ports[node]}"}
        instances[node] = ec2.run_instances(
            ImageId=some_image(clients), MinCount=1, MaxCount=1, InstanceType="t3.large",
            SubnetId=subnet,
            TagSpecifications=[{
                "ResourceType": "instance",
                "Tags": [{"Key": k, "Value": v} for k, v in node_tags.items()],
            }],
        )["Instances"][0]
    lb_arn = elbv2.create_load_balancer(Name="db", Subnets=list(subnets))["LoadBalancers"][0][
        "LoadBalancerArn"
    ]
    groups: dict[str, str] = {}
    for node, instance in instances.items():
        name = "db-primary" if node == primary_node else "db-shadow"
        groups[node] = elbv2.create_target_group(
            Name=name, Protocol="HTTP", Port=5432, VpcId=vpc
        )["TargetGroups"][0]["TargetGroupArn"]
        targets = [{"Id": instance["InstanceId"]}]
        elbv2.register_targets(TargetGroupArn=groups[node], Targets=targets)
    listener = elbv2.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[primary_node]}],
    )["Listeners"][0]["ListenerArn"]
    zone = clients.route53.create_hosted_zone(Name="example.com", CallerReference=str(time.time()))
    zone_id = zone["HostedZone"]["Id"].removeprefix("/hostedzone/")
    for node, instance in instances.items():
        weight = 100 if node == primary_node else 0
        upsert_record(clients, zone_id, node, instance["PrivateIpAddress"], weight)
    return PgWorld(
        instance_id, instances[primary_node]["InstanceId"], instances[shadow_node]["InstanceId"],
        ports, listener, groups, zone_id, (subnets[0], subnets[1]),
    )


def alb_weights(clients: AwsClients, world: PgWorld) -> dict[str, int]:
    """Node → forward weight of the listener's default action, read with plain boto3."""
    listener = clients.elbv2.describe_listeners(ListenerArns=[world.listener_arn])["Listeners"][0]
    forward = next(a for a in listener["DefaultActions"] if a["Type"] == "forward")
    by_group = {g["TargetGroupArn"]: g.get("Weight", 1)
                for g in forward.get("ForwardConfig", {}).get("TargetGroups", [])}
    if not by_group and forward.get("TargetGroupArn"):
        by_group = {forward["TargetGroupArn"]: 100}
    return {node: int(by_group.get(arn, 0)) for node, arn in world.groups.items()}


def dns_weights(clients: AwsClients, world: PgWorld) -> dict[str, int]:
    """Node (set identifier) → weight of the service's A records, read with plain boto3."""
    records = clients.route53.list_resource_record_sets(HostedZoneId=world.zone_id)
    return {r["SetIdentifier"]: int(r["Weight"]) for r in records["ResourceRecordSets"]
            if r["Type"] == "A" and r.get("SetIdentifier")}


class ResolvingEndpoint:
    """A client that resolves the weighted record on every (re)connect, as with a zero TTL.

    It picks a record with Route 53's rule (by weight; all weights 0 → any record), maps the
    instance's address to its local PostgreSQL and connects there. ``Writer`` only calls
    :meth:`connect`, so this stands in for a ``PgEndpoint``.
    """

    def __init__(self, clients: AwsClients, world: PgWorld) -> None:
        self._clients = clients
        self._world = world
        self._by_ip: dict[str, int] = {}
        for node, ec2_id in zip(world.nodes, (world.primary_ec2, world.shadow_ec2), strict=True):
            instance = clients.ec2.describe_instances(InstanceIds=[ec2_id])
            ip = instance["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
            self._by_ip[ip] = world.ports[node]

    def connect(self, *, timeout_s: float = 5.0, autocommit: bool = True) -> psycopg.Connection:
        """Resolve, then connect to the answer (a failed lookup fails like a connect)."""
        try:
            listed = self._clients.route53.list_resource_record_sets(
                HostedZoneId=self._world.zone_id
            )["ResourceRecordSets"]
        except (BotoCoreError, ClientError) as err:
            raise psycopg.OperationalError(f"resolving failed: {err}") from err
        records = [r for r in listed if r["Type"] == "A" and r.get("SetIdentifier")]
        weights = [int(r["Weight"]) for r in records]
        chosen = random.choices(records, weights=weights if sum(weights) else None)[0]
        port = self._by_ip[chosen["ResourceRecords"][0]["Value"]]
        return PgEndpoint(port=port).connect(timeout_s=timeout_s, autocommit=autocommit)
