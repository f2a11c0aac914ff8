"""Checks that refuse bad input before any AWS resource is created.

Each check names the spec field to fix: an instance, subnet, zone, hosted zone, listener or
target group that does not exist; a subnet in the primary's own zone (anti-affinity would be
impossible); a plain DNS record where weighted ones must go; a primary missing from its
target group.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.aws.clients import AwsClients
from infra.aws.discovery import PrimaryFacts, inspect_primary, latest_snapshot
from infra.aws.errors import aws_errors
from infra.aws.spec import AlbRoutingSpec, AwsShadowSpec, DnsRoutingSpec
from infra.errors import InvalidRequestError


@dataclass(frozen=True)
class ShadowPlacement:
    """Where the shadow goes."""

    subnet_id: str
    """The spec's shadow subnet."""
    availability_zone: str
    """Its zone, which differs from the primary's."""


@dataclass(frozen=True)
class PreflightResult:
    """Everything the shadow program needs, read and checked."""

    primary: PrimaryFacts
    """Facts about the primary."""
    placement: ShadowPlacement
    """The shadow's subnet and zone."""
    snapshot_id: str | None
    """Latest completed snapshot of the data volume (snapshot strategy only)."""


def preflight(clients: AwsClients, spec: AwsShadowSpec) -> PreflightResult:
    """Check ``spec`` against AWS and return what the program needs.

    Raises:
        InvalidRequestError: the first problem found, naming the field to fix.
        AwsPermissionError: the worker may not read something it needs (names the action).
    """
    primary = inspect_primary(clients, spec)
    placement = check_placement(clients, spec, primary)
    if primary.data_volume is None:
        raise InvalidRequestError(
            f"data_device_name {spec.data_device_name!r}: no EBS volume is attached there on "
            f"{spec.ec2_instance_id}; name the device of the primary's data volume"
        )
    snapshot_id = None
    if spec.uses_snapshot:
        found = latest_snapshot(clients, primary.data_volume.volume_id)
        snapshot_id = found[0] if found else None
    if spec.dns is not None:
        check_dns(clients, spec.dns)
    if spec.alb is not None:
        check_alb(clients, spec.alb, primary)
    return PreflightResult(primary, placement, snapshot_id)


def check_placement(
    clients: AwsClients, spec: AwsShadowSpec, primary: PrimaryFacts
) -> ShadowPlacement:
    """The shadow subnet exists, shares the primary's VPC and lies in another, available zone."""
    what = f"shadow_subnet_id {spec.shadow_subnet_id!r}"
    with aws_errors("ec2", what):
        subnets = clients.ec2.describe_subnets(SubnetIds=[spec.shadow_subnet_id])["Subnets"]
    if not subnets:
        raise InvalidRequestError(f"{what} does not exist")
    subnet = subnets[0]
    zone = subnet["AvailabilityZone"]
    if subnet["VpcId"] != primary.vpc_id:
        raise InvalidRequestError(
            f"{what} is in {subnet['VpcId']}, the primary in {primary.vpc_id}: the shadow needs "
            "the primary's security groups, so choose a subnet of the primary's VPC"
        )
    if zone == primary.availability_zone:
        others = _other_zones(clients, primary)
        hint = (
            f"subnets of this VPC in other zones: {', '.join(others)}"
            if others
            else ("this VPC has no subnet in another zone; create one first")
        )
        raise InvalidRequestError(
            f"{what} is in {zone}, the primary's own availability zone; a shadow there fails "
            f"with it. Choose a subnet in another zone ({hint})"
        )
    with aws_errors("ec2", f"availability zone {zone!r} of {what}"):
        zones = clients.ec2.describe_availability_zones(ZoneNames=[zone])["AvailabilityZones"]
    if not zones or zones[0].get("State") != "available":
        raise InvalidRequestError(f"availability zone {zone} of {what} is not available")
    return ShadowPlacement(subnet_id=spec.shadow_subnet_id, availability_zone=zone)


def check_dns(clients: AwsClients, dns: DnsRoutingSpec) -> None:
    """The zone exists, holds the record name, and no plain record blocks weighted ones."""
    what = f"dns.hosted_zone_id {dns.hosted_zone_id!r}"
    with aws_errors("route53", what):
        zone = clients.route53.get_hosted_zone(Id=dns.zone_id)["HostedZone"]
    zone_name = zone["Name"].rstrip(".").lower()
    name = dns.record_name.rstrip(".").lower()
    if name != zone_name and not name.endswith("." + zone_name):
        raise InvalidRequestError(
            f"dns.record_name {dns.record_name!r} is not inside hosted zone {zone_name}"
        )
    with aws_errors("route53", what):
        records = clients.route53.list_resource_record_sets(
            HostedZoneId=dns.zone_id, StartRecordName=name, StartRecordType="A", MaxItems="20"
        )["ResourceRecordSets"]
    for record in records:
        same = record["Name"].rstrip(".").lower() == name and record["Type"] == "A"
        if same and "SetIdentifier" not in record:
            raise InvalidRequestError(
                f"dns.record_name {dns.record_name}: a plain (non-weighted) A record exists; "
                "Route 53 cannot mix it with weighted records. Replace it with a weighted record "
                "whose set identifier is the instance's node name, or delete it"
            )


def check_alb(clients: AwsClients, alb: AlbRoutingSpec, primary: PrimaryFacts) -> None:
    """Listener and both target groups exist; the primary is registered in its group."""
    with aws_errors("elbv2", f"alb.listener_arn {alb.listener_arn!r}"):
        clients.elbv2.describe_listeners(ListenerArns=[alb.listener_arn])
    for field in ("primary_target_group_arn", "shadow_target_group_arn"):
        arn = getattr(alb, field)
        with aws_errors("elbv2", f"alb.{field} {arn!r}"):
            group = clients.elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
        if group.get("TargetType", "instance") != "instance":
            raise InvalidRequestError(
                f"alb.{field}: target type {group['TargetType']!r}; ShadowShift registers "
                "instances, so use a target group of type 'instance'"
            )
        if group.get("VpcId") not in (None, primary.vpc_id):
            raise InvalidRequestError(f"alb.{field} is in another VPC than the primary")
    with aws_errors("elbv2", "alb.primary_target_group_arn"):
        health = clients.elbv2.describe_target_health(TargetGroupArn=alb.primary_target_group_arn)
    targets = {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]}
    if primary.ec2_instance_id not in targets:
        raise InvalidRequestError(
            f"alb.primary_target_group_arn does not contain the primary "
            f"{primary.ec2_instance_id}; register it there first"
        )


def _other_zones(clients: AwsClients, primary: PrimaryFacts) -> list[str]:
    with aws_errors("ec2"):
        subnets = clients.ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [primary.vpc_id]}]
        )["Subnets"]
    return sorted(
        f"{s['SubnetId']} ({s['AvailabilityZone']})"
        for s in subnets
        if s["AvailabilityZone"] != primary.availability_zone
    )
