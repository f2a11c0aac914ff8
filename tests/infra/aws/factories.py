"""Specs and primary facts for tests that need no AWS at all."""

from __future__ import annotations

from typing import Any

from infra.aws.discovery import DataVolumeFacts, PrimaryFacts
from infra.aws.preflight import PreflightResult, ShadowPlacement
from infra.aws.spec import AlbRoutingSpec, AwsShadowSpec, DnsRoutingSpec

ACCOUNT = "123456789012"
LISTENER = (
    f"arn:aws:elasticloadbalancing:eu-west-1:{ACCOUNT}:listener/app/web/"
    "50dc6c495c0c9188/f2f7dc8efc522ab2"
)
PRIMARY_TG = (
    f"arn:aws:elasticloadbalancing:eu-west-1:{ACCOUNT}:targetgroup/db-primary/73e2d6bc24d8a067"
)
SHADOW_TG = (
    f"arn:aws:elasticloadbalancing:eu-west-1:{ACCOUNT}:targetgroup/db-shadow/83e2d6bc24d8a067"
)


def make_spec(**overrides: Any) -> AwsShadowSpec:
    """A valid spec with both routers; ``overrides`` replace fields."""
    values: dict[str, Any] = {
        "instance_id": "orders-db",
        "ec2_instance_id": "i-0123456789abcdef0",
        "region": "eu-west-1",
        "shadow_subnet_id": "subnet-0bbbbbbbbbbbbbbbb",
        "dns": DnsRoutingSpec(hosted_zone_id="Z0123456789ABCDEFGHIJ", record_name="db.example.com"),
        "alb": AlbRoutingSpec(
            listener_arn=LISTENER,
            primary_target_group_arn=PRIMARY_TG,
            shadow_target_group_arn=SHADOW_TG,
            target_port=5432,
        ),
    }
    values.update(overrides)
    return AwsShadowSpec(**values)


def make_facts(snapshot_id: str | None = "snap-0123456789abcdef0") -> PreflightResult:
    """What preflight would have found for :func:`make_spec`'s primary."""
    primary = PrimaryFacts(
        ec2_instance_id="i-0123456789abcdef0",
        instance_type="m6i.large",
        image_id="ami-0abcdef1234567890",
        availability_zone="eu-west-1a",
        subnet_id="subnet-0aaaaaaaaaaaaaaaa",
        vpc_id="vpc-0123456789abcdef0",
        security_group_ids=("sg-0123456789abcdef0", "sg-0fedcba9876543210"),
        private_ip="10.0.1.10",
        state="running",
        key_name="ops",
        tags={"Name": "orders-db", "team": "payments", "shadowshift:role": "primary"},
        data_volume=DataVolumeFacts(
            volume_id="vol-0123456789abcdef0",
            size_gib=200,
            volume_type="gp3",
            iops=6000,
            throughput=250,
        ),
    )
    placement = ShadowPlacement(
        subnet_id="subnet-0bbbbbbbbbbbbbbbb", availability_zone="eu-west-1b"
    )
    return PreflightResult(primary, placement, snapshot_id)
