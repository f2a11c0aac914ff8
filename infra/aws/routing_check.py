"""Which node the routers actually send traffic to, read from their configuration.

The local platform verifies a cutover by writing through HAProxy and seeing which server
answered. On AWS the equivalent packet path (client → ALB or resolver → instance) cannot be
exercised from the worker reliably (resolver caches) and not at all against moto, which
forwards no traffic. So the verify reads what each router would do — the listener's forward
weights and the target group's registered targets; the weighted records and the addresses
they hold — requires all of them to agree on one node, and then writes to that node.
"""

from __future__ import annotations

from infra.aws.clients import AwsClients
from infra.aws.errors import aws_errors
from infra.aws.nodes import NodeDirectory
from infra.aws.spec import AwsShadowSpec
from infra.aws.traffic import DnsWeights, TrafficRouter
from infra.errors import InfraError


def serving_node(
    spec: AwsShadowSpec, clients: AwsClients, router: TrafficRouter, nodes: NodeDirectory
) -> str:
    """The one node every configured router sends all traffic to.

    Raises:
        InfraError: a router sends traffic to no node or to both, the routers disagree, the
            node's target group does not hold its instance, or its record holds another address.
    """
    chosen: dict[str, str] = {}
    if router.alb is not None and spec.alb is not None:
        node = _only_weighted("ALB listener", router.alb.get())
        group = (
            spec.alb.primary_target_group_arn
            if node == spec.primary_node
            else spec.alb.shadow_target_group_arn
        )
        with aws_errors("elbv2", f"target group {group!r}"):
            health = clients.elbv2.describe_target_health(TargetGroupArn=group)
        targets = {str(d["Target"]["Id"]) for d in health["TargetHealthDescriptions"]}
        if nodes.ec2_id(node) not in targets:
            raise InfraError(
                f"the ALB forwards to {node}'s target group, which does not hold its instance "
                f"{nodes.ec2_id(node)} (it holds {sorted(targets)})"
            )
        chosen["ALB"] = node
    if router.dns is not None and spec.dns is not None:
        node = _only_weighted(f"Route 53 {spec.dns.record_name}", router.dns.get())
        expected = nodes.ip(node, public=spec.dns.address == "public")
        held = _record_values(router.dns, node)
        if expected not in held:
            raise InfraError(
                f"Route 53 sends {spec.dns.record_name} to {node}, but its record holds "
                f"{held}, not the instance's address {expected}"
            )
        chosen["Route 53"] = node
    if not chosen:
        raise InfraError(f"{spec.instance_id} has no router configured")
    if len(set(chosen.values())) != 1:
        raise InfraError(f"the routers disagree on who serves: {chosen}")
    return next(iter(chosen.values()))


def _only_weighted(router: str, weights: dict[str, int]) -> str:
    serving = [node for node, weight in weights.items() if weight > 0]
    if len(serving) != 1:
        raise InfraError(f"the {router} does not send all traffic to one node: {weights}")
    return serving[0]


def _record_values(dns: DnsWeights, node: str) -> list[str]:
    record = dns.records().get(node, {})
    return [str(r["Value"]) for r in record.get("ResourceRecords", [])]
