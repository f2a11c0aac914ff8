"""Weights through the fast path against moto: ALB forward weights and Route 53 records."""

from __future__ import annotations

from typing import Any

import pytest

from infra.aws.clients import AwsClients
from infra.aws.spec import AwsShadowSpec
from infra.aws.traffic import AlbWeights, DnsWeights, TrafficRouter
from infra.errors import InvalidRequestError
from tests.infra.aws.conftest import World, simulate_shadow_stack


def _routers(clients: AwsClients, spec: AwsShadowSpec) -> tuple[AlbWeights, DnsWeights]:
    assert spec.alb is not None and spec.dns is not None
    groups = {
        spec.primary_node: spec.alb.primary_target_group_arn,
        spec.shadow_node: spec.alb.shadow_target_group_arn,
    }
    return (
        AlbWeights(clients.elbv2, spec.alb, groups),
        DnsWeights(clients.route53, spec.dns, spec.nodes, poll_interval_s=0.1),
    )


def test_alb_weights_round_trip(clients: AwsClients, world: World) -> None:
    """A plain forward reads as 100/0; weights written absolutely read back unchanged."""
    alb, _ = _routers(clients, world.spec())
    assert alb.get() == {"orders-db": 100, "orders-db-shadow": 0}
    for weights in (
        {"orders-db": 70, "orders-db-shadow": 30},
        {"orders-db": 0, "orders-db-shadow": 100},
    ):
        alb.set(weights)
        alb.set(weights)  # a retry changes nothing
        assert alb.get() == weights
    listener = clients.elbv2.describe_listeners(ListenerArns=[world.listener_arn])["Listeners"][0]
    groups = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    assert {g["TargetGroupArn"]: g["Weight"] for g in groups} == {
        world.primary_tg: 0,
        world.shadow_tg: 100,
    }


def test_route53_weights_round_trip(clients: AwsClients, world: World) -> None:
    """UPSERTs keep each record's value and TTL, change only weights, and wait for INSYNC."""
    simulate_shadow_stack(clients, world)
    _, dns = _routers(clients, world.spec())
    assert dns.get() == {"orders-db": 100, "orders-db-shadow": 0}
    dns.set({"orders-db": 0, "orders-db-shadow": 100})
    assert dns.get() == {"orders-db": 0, "orders-db-shadow": 100}
    records = clients.route53.list_resource_record_sets(HostedZoneId=world.zone_id)[
        "ResourceRecordSets"
    ]
    primary = next(r for r in records if r.get("SetIdentifier") == "orders-db")
    assert primary["ResourceRecords"] == [{"Value": "10.0.1.4"}] and primary["TTL"] == 30


def test_dns_refuses_a_node_without_record(clients: AwsClients, world: World) -> None:
    """Before the shadow exists there is no record to weigh; say so instead of inventing one."""
    _, dns = _routers(clients, world.spec())
    with pytest.raises(InvalidRequestError, match="no weighted record for orders-db-shadow"):
        dns.set({"orders-db-shadow": 100})


def test_router_undoes_the_alb_when_route53_fails(
    clients: AwsClients, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Route 53 failure after the ALB moved puts the ALB back: the routers never disagree."""
    simulate_shadow_stack(clients, world)
    alb, dns = _routers(clients, world.spec())
    router = TrafficRouter(alb, dns)

    def refuse(*_: Any, **__: Any) -> None:
        raise RuntimeError("Route 53 is down")

    monkeypatch.setattr(dns, "set", refuse)
    with pytest.raises(RuntimeError, match="Route 53 is down"):
        router.set({"orders-db": 0, "orders-db-shadow": 100})
    assert alb.get() == {"orders-db": 100, "orders-db-shadow": 0}
    monkeypatch.undo()
    router.set({"orders-db": 0, "orders-db-shadow": 100})
    assert router.get() == {"orders-db": 0, "orders-db-shadow": 100}
