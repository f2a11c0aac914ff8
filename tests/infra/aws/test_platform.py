"""AwsPlatform against moto: weights, fencing, promotion, probes, snapshots, bad input.

The Pulumi program cannot run here (no AWS provider plugin), so the shadow's resources are
created by boto3 the way the program would create them, and the platform runs without a
stack driver (nothing to reconcile).
"""

from __future__ import annotations

import pytest

from infra.aws.clients import AwsClients
from infra.aws.fencing import InstanceControl
from infra.aws.platform import AwsPlatform
from infra.aws.snapshots import take_snapshot
from infra.errors import InvalidRequestError
from tests.infra.aws.conftest import World, simulate_shadow_stack


def _platform(clients: AwsClients, world: World, **spec: object) -> AwsPlatform:
    control = InstanceControl(clients.ec2, wait_timeout_s=10, poll_s=1)
    return AwsPlatform(world.spec(**spec), clients, None, instance_control=control)


def test_cutover_sequence_and_its_compensation(clients: AwsClients, world: World) -> None:
    """Fence, promote, shift; then the same steps undone restore the original service."""
    shadow_id = simulate_shadow_stack(clients, world)
    platform = _platform(clients, world)
    primary, shadow = "orders-db", "orders-db-shadow"
    assert platform.get_weights() == {primary: 100, shadow: 0}
    assert platform.probe(primary).writable and not platform.probe(shadow).writable

    platform.fence(primary)
    platform.fence(primary)  # idempotent
    assert platform.get_weights() == {primary: 0, shadow: 0}
    assert platform.control.state(world.primary_id) == "stopped"
    assert platform.probe(primary).reachable is False

    platform.unfence(primary)  # compensation before the point of no return
    platform.set_weights({primary: 100, shadow: 0})
    assert platform.probe(primary).writable
    assert platform.get_weights() == {primary: 100, shadow: 0}

    platform.fence(primary)
    platform.promote(shadow)
    platform.promote(shadow)
    platform.set_weights({shadow: 100})
    assert platform.get_weights() == {primary: 0, shadow: 100}
    assert platform.probe(shadow).writable and platform.control.role(shadow_id) == "primary"
    with pytest.raises(InvalidRequestError, match="fenced"):
        platform.promote(primary)


def test_bad_weights_are_refused_before_anything_moves(clients: AwsClients, world: World) -> None:
    """Out-of-range weights and unknown nodes change neither router."""
    simulate_shadow_stack(clients, world)
    platform = _platform(clients, world)
    for weights in ({"orders-db": 150}, {"elsewhere": 0}, {"orders-db": -1}):
        with pytest.raises(InvalidRequestError):
            platform.set_weights(weights)
    assert platform.get_weights() == {"orders-db": 100, "orders-db-shadow": 0}


def test_probe_of_a_missing_shadow(clients: AwsClients, world: World) -> None:
    """Before provisioning the shadow is simply unreachable; fencing it is refused by name."""
    platform = _platform(clients, world)
    assert platform.probe("orders-db-shadow").reachable is False
    with pytest.raises(InvalidRequestError, match="provision the shadow first"):
        platform.fence("orders-db-shadow")


def test_tier3_lag_is_the_age_of_the_newest_snapshot(clients: AwsClients, world: World) -> None:
    """take_snapshot waits for completion; replication status reports it and its age."""
    platform = _platform(clients, world, tier=3)
    assert platform.replication_status().replay_position is None
    snapshot_id = take_snapshot(clients, world.data_volume_id, "orders-db")
    status = platform.replication_status()
    assert status.state == "archive" and status.replay_position == snapshot_id
    assert status.lag_seconds is not None and 0 <= status.lag_seconds < 120


def test_provision_with_bad_input_creates_nothing(clients: AwsClients, world: World) -> None:
    """Preflight refuses a subnet in the primary's zone before any instance or snapshot exists."""
    platform = _platform(clients, world, shadow_subnet_id=world.primary_subnet, tier=3)
    with pytest.raises(InvalidRequestError, match="availability zone"):
        platform.provision_shadow()
    reservations = clients.ec2.describe_instances()["Reservations"]
    assert sum(len(r["Instances"]) for r in reservations) == 1
    of_data = [{"Name": "volume-id", "Values": [world.data_volume_id]}]
    assert clients.ec2.describe_snapshots(Filters=of_data)["Snapshots"] == []


def test_cutover_hooks_router_fence_and_node_stop(clients: AwsClients, world: World) -> None:
    """The saga's hooks: router fence without the node, stop returning a token, start undoing it."""
    simulate_shadow_stack(clients, world)
    platform = _platform(clients, world)
    platform.fence_router("orders-db")
    assert platform.get_weights()["orders-db"] == 0
    platform.close_router_sessions("orders-db")
    token = platform.stop_node("orders-db")
    assert token == world.primary_id and platform.stop_node("orders-db") is None
    platform.start_node("orders-db", token)
    assert platform.control.state(world.primary_id) == "running"
