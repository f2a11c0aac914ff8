"""Preflight against moto: bad input is refused, naming the field, before anything exists."""

from __future__ import annotations

import time

import pytest

from infra.aws.clients import AwsClients
from infra.aws.preflight import preflight
from infra.aws.spec import AlbRoutingSpec, DnsRoutingSpec
from infra.errors import InvalidRequestError
from tests.infra.aws.conftest import World, upsert_record


def test_preflight_reads_the_primary_and_places_the_shadow_elsewhere(
    clients: AwsClients, world: World
) -> None:
    """A good spec yields the primary's facts and a placement in the other zone."""
    result = preflight(clients, world.spec(tier=3))
    assert result.primary.instance_type == "t3.large"
    assert result.primary.tags == {"Name": "orders-db"}
    assert result.primary.availability_zone == "eu-west-1a"
    assert result.placement.availability_zone == "eu-west-1b"
    assert result.primary.data_volume is not None
    assert result.primary.data_volume.volume_id == world.data_volume_id
    assert result.snapshot_id is None  # no snapshot taken yet


def test_latest_completed_snapshot_is_chosen(clients: AwsClients, world: World) -> None:
    """Tier 3 seeds from the newest completed snapshot of the data volume."""
    clients.ec2.create_snapshot(VolumeId=world.data_volume_id)
    time.sleep(1.1)  # moto stamps snapshots to the second
    newest = clients.ec2.create_snapshot(VolumeId=world.data_volume_id)["SnapshotId"]
    assert preflight(clients, world.spec(tier=3)).snapshot_id == newest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ec2_instance_id": "i-0000000000000000f"}, "ec2_instance_id 'i-0000000000000000f'"),
        ({"shadow_subnet_id": "subnet-0000000000000000f"}, "shadow_subnet_id"),
        ({"data_device_name": "/dev/sdg"}, "data_device_name '/dev/sdg'"),
    ],
)
def test_missing_ec2_things_are_named(
    clients: AwsClients, world: World, change: dict[str, str], message: str
) -> None:
    """An instance, subnet or data device that does not exist is refused by field name."""
    with pytest.raises(InvalidRequestError, match=message):
        preflight(clients, world.spec(**change))


def test_subnet_in_the_primary_zone_is_refused(clients: AwsClients, world: World) -> None:
    """Anti-affinity: a shadow subnet in the primary's zone is refused, listing alternatives."""
    with pytest.raises(InvalidRequestError, match="primary's own availability zone") as err:
        preflight(clients, world.spec(shadow_subnet_id=world.primary_subnet))
    assert world.other_subnet in str(err.value)


def test_missing_hosted_zone_and_plain_record(clients: AwsClients, world: World) -> None:
    """An unknown hosted zone is named; a plain A record that blocks weighted ones too."""
    missing = DnsRoutingSpec(hosted_zone_id="ZNOSUCHZONE", record_name="db.example.com")
    with pytest.raises(InvalidRequestError, match=r"dns\.hosted_zone_id 'ZNOSUCHZONE'"):
        preflight(clients, world.spec(dns=missing))
    outside = DnsRoutingSpec(hosted_zone_id=world.zone_id, record_name="db.example.org")
    with pytest.raises(InvalidRequestError, match="not inside hosted zone"):
        preflight(clients, world.spec(dns=outside))
    plain = {
        "Name": "api.example.com",
        "Type": "A",
        "TTL": 60,
        "ResourceRecords": [{"Value": "10.0.1.9"}],
    }
    clients.route53.change_resource_record_sets(
        HostedZoneId=world.zone_id,
        ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": plain}]},
    )
    api = DnsRoutingSpec(hosted_zone_id=world.zone_id, record_name="api.example.com")
    with pytest.raises(InvalidRequestError, match="plain \\(non-weighted\\) A record"):
        preflight(clients, world.spec(dns=api))
    upsert_record(clients, world.zone_id, "orders-db", "10.0.1.4", 100)  # still fine


def test_missing_listener_target_group_and_unregistered_primary(
    clients: AwsClients, world: World
) -> None:
    """Listener and target groups must exist and the primary must be in its group."""
    gone_listener = world.listener_arn[:-4] + "dead"
    alb = AlbRoutingSpec(
        listener_arn=gone_listener,
        primary_target_group_arn=world.primary_tg,
        shadow_target_group_arn=world.shadow_tg,
    )
    with pytest.raises(InvalidRequestError, match=r"alb\.listener_arn"):
        preflight(clients, world.spec(alb=alb))
    gone_group = world.shadow_tg[:-4] + "dead"
    alb = AlbRoutingSpec(
        listener_arn=world.listener_arn,
        primary_target_group_arn=world.primary_tg,
        shadow_target_group_arn=gone_group,
    )
    with pytest.raises(InvalidRequestError, match=r"alb\.shadow_target_group_arn"):
        preflight(clients, world.spec(alb=alb))
    swapped = AlbRoutingSpec(
        listener_arn=world.listener_arn,
        primary_target_group_arn=world.shadow_tg,
        shadow_target_group_arn=world.primary_tg,
    )
    with pytest.raises(InvalidRequestError, match="does not contain the primary"):
        preflight(clients, world.spec(alb=swapped))
