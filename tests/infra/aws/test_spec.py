"""The AWS spec refuses bad input by field name; the documented example loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.aws.spec import AlbRoutingSpec, DnsRoutingSpec
from infra.aws.spec_loader import load_spec, load_spec_file
from infra.errors import InvalidRequestError
from tests.infra.aws.factories import LISTENER, PRIMARY_TG, make_spec

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "aws" / "protection-spec.example.yaml"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ec2_instance_id": "i-xyz"}, "ec2_instance_id"),
        ({"region": "moon-1"}, "region"),
        ({"shadow_subnet_id": "sub-1"}, "shadow_subnet_id"),
        ({"tier": 4}, "tier"),
        ({"data_volume": "copy"}, "data_volume"),
        ({"data_device_name": "/dev/sda1"}, "data_device_name"),
        ({"tier": 3, "data_volume": "fresh"}, "data_volume 'fresh'"),
        ({"dns": None, "alb": None}, "dns and alb"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], field: str) -> None:
    """Each invalid value names its field."""
    with pytest.raises(InvalidRequestError, match=field):
        make_spec(**change)


def test_routing_sections_validate_too() -> None:
    """Zone, record name, TTL, ARNs and the two distinct target groups are checked."""
    with pytest.raises(InvalidRequestError, match=r"dns\.ttl_s"):
        make_spec(dns=DnsRoutingSpec(hosted_zone_id="Z1", record_name="db.example.com",
                                     ttl_s=-1))
    with pytest.raises(InvalidRequestError, match=r"dns\.record_name"):
        make_spec(dns=DnsRoutingSpec(hosted_zone_id="Z1", record_name="not a name"))
    with pytest.raises(InvalidRequestError, match="must differ"):
        make_spec(alb=AlbRoutingSpec(
            listener_arn=LISTENER,
            primary_target_group_arn=PRIMARY_TG,
            shadow_target_group_arn=PRIMARY_TG,
        ))


def test_loader_refuses_unknown_and_missing_keys() -> None:
    """A typo is refused by name instead of silently dropping the ALB from the cutover."""
    with pytest.raises(InvalidRequestError, match=r"alb\.listner_arn"):
        load_spec(
            {
                "instance_id": "db",
                "ec2_instance_id": "i-0123456789abcdef0",
                "region": "eu-west-1",
                "shadow_subnet_id": "subnet-0123456789abcdef0",
                "alb": {"listner_arn": LISTENER},
            }
        )
    with pytest.raises(InvalidRequestError, match="ec2_instance_id: required"):
        load_spec({"instance_id": "db"})


def test_documented_example_loads() -> None:
    """docs/aws/protection-spec.example.yaml is a valid spec."""
    spec = load_spec_file(EXAMPLE)
    assert spec.tier == 3 and spec.uses_snapshot
    assert spec.dns is not None and spec.alb is not None
