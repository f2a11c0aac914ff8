"""The pulumi-aws program of one EC2 shadow.

Resources (Pulumi deletes in reverse):

1. the shadow instance: the primary's type, AMI, security groups and tags, in the spec's
   subnet, which preflight proved lies in another availability zone (anti-affinity);
2. its data volume: restored from the primary's latest EBS snapshot (tier 3, or the
   ``snapshot`` strategy), else a fresh volume of the same size and kind that application-level
   streaming fills (tiers 1-2); attached at the primary's data device;
3. the shadow's registration in the ALB's shadow target group;
4. the Route 53 weighted records, one set identifier per node, weights from the stack's
   ``shadowshift:weights`` config (100/0 until a cutover reconciles them).

The ALB listener is the service's, not the stack's: its forward weights are set only through
the API (:mod:`infra.aws.traffic`), so ``pulumi up`` can never revert them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.discovery import NODE_TAG, ROLE_TAG, SOURCE_SNAPSHOT_TAG
from infra.aws.preflight import PreflightResult
from infra.aws.spec import AwsShadowSpec
from infra.aws.user_data import agent_user_data
from infra.errors import InvalidRequestError

WEIGHTS_CONFIG_KEY = "weights"
"""Key (in the ``shadowshift`` namespace) of the per-node weights, a JSON object."""


@dataclass(frozen=True, kw_only=True)
class Ec2ShadowArgs:
    """Inputs of :class:`Ec2Shadow`, all known before the program runs."""

    spec: AwsShadowSpec
    """The protection spec."""
    facts: PreflightResult
    """The primary's facts and the shadow's placement, from preflight."""
    weights: Mapping[str, int]
    """Absolute weight per node, 0..100."""


def default_weights(spec: AwsShadowSpec) -> dict[str, int]:
    """Before any cutover: all traffic on the primary."""
    return {spec.primary_node: 100, spec.shadow_node: 0}


def checked_weights(spec: AwsShadowSpec, weights: Mapping[str, int]) -> dict[str, int]:
    """``weights`` completed with defaults; refuse unknown nodes and values outside 0..100."""
    merged = {**default_weights(spec), **weights}
    for node, weight in merged.items():
        if node not in spec.nodes:
            raise InvalidRequestError(f"unknown node {node!r}; nodes are {', '.join(spec.nodes)}")
        if not isinstance(weight, int) or not 0 <= weight <= 100:
            raise InvalidRequestError(f"weight {weight!r} for {node} is outside 0..100")
    return merged


class Ec2Shadow(pulumi.ComponentResource):
    """The shadow instance, its data volume and its router entries."""

    def __init__(
        self, name: str, args: Ec2ShadowArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("shadowshift:aws:Ec2Shadow", name, None, opts)
        spec, primary, placement = args.spec, args.facts.primary, args.facts.placement
        weights = checked_weights(spec, args.weights)
        child = pulumi.ResourceOptions(parent=self)
        # Reserved keys of ours are the primary's own bookkeeping, not something to copy.
        copied = {k: v for k, v in primary.tags.items() if not k.startswith("shadowshift:")}
        tags = {
            **copied,
            "Name": f"{primary.tags.get('Name', spec.instance_id)}-shadow",
            NODE_TAG: spec.shadow_node,
            ROLE_TAG: "shadow",
            "shadowshift:primary-instance": primary.ec2_instance_id,
        }
        self.data_volume = self._data_volume(args, tags)
        # With an agent, the first boot mounts the volume and starts the agent, which copies
        # the standby (infra/aws/user_data.py).
        agent = spec.agent
        user_data = None if agent is None else self.data_volume.id.apply(
            lambda volume_id: agent_user_data(agent, spec.shadow_node, volume_id,
                                              spec.data_device_name))
        self.instance = aws.ec2.Instance(
            "instance",
            user_data=user_data,
            ami=primary.image_id,
            instance_type=primary.instance_type,
            subnet_id=placement.subnet_id,
            availability_zone=placement.availability_zone,
            vpc_security_group_ids=list(primary.security_group_ids),
            key_name=primary.key_name,
            tags=tags,
            region=spec.region,
            opts=child,
        )
        self.attachment = aws.ec2.VolumeAttachment(
            "data-attachment",
            device_name=spec.data_device_name,
            volume_id=self.data_volume.id,
            instance_id=self.instance.id,
            # Detaching a mounted file system from a running instance risks corrupting it.
            stop_instance_before_detaching=True,
            region=spec.region,
            opts=child,
        )
        self.target: aws.lb.TargetGroupAttachment | None = None
        if spec.alb is not None:
            self.target = aws.lb.TargetGroupAttachment(
                "shadow-target",
                target_group_arn=spec.alb.shadow_target_group_arn,
                target_id=self.instance.id,
                port=spec.alb.target_port,
                region=spec.region,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.attachment]),
            )
        self.records: dict[str, aws.route53.Record] = {}
        if spec.dns is not None:
            self._records(args, weights)
        self.register_outputs(
            {"shadow_instance_id": self.instance.id, "data_volume_id": self.data_volume.id}
        )

    def _data_volume(self, args: Ec2ShadowArgs, tags: Mapping[str, str]) -> aws.ebs.Volume:
        spec, facts = args.spec, args.facts
        source = facts.primary.data_volume
        if source is None:
            raise InvalidRequestError(f"the primary has no data volume at {spec.data_device_name}")
        volume_tags = {**tags, "shadowshift:source-volume": source.volume_id}
        common = {
            "availability_zone": facts.placement.availability_zone,
            "type": source.volume_type,
            "iops": source.iops,
            "throughput": source.throughput,
            "region": spec.region,
            "opts": pulumi.ResourceOptions(parent=self),
        }
        if spec.uses_snapshot:
            if facts.snapshot_id is None:
                raise InvalidRequestError(
                    f"no completed snapshot of {source.volume_id} exists to restore the shadow from"
                )
            return aws.ebs.Volume(
                "data",
                snapshot_id=facts.snapshot_id,
                tags={**volume_tags, SOURCE_SNAPSHOT_TAG: facts.snapshot_id},
                **common,  # type: ignore[arg-type]
            )
        return aws.ebs.Volume(
            "data",
            size=source.size_gib,
            encrypted=source.encrypted,
            kms_key_id=source.kms_key_id,
            tags=volume_tags,
            **common,  # type: ignore[arg-type]
        )

    def _records(self, args: Ec2ShadowArgs, weights: Mapping[str, int]) -> None:
        spec, primary = args.spec, args.facts.primary
        assert spec.dns is not None
        public = spec.dns.address == "public"
        if public and not primary.public_ip:
            raise InvalidRequestError("dns.address is 'public' but the primary has no public IP")
        shadow_ip = self.instance.public_ip if public else self.instance.private_ip
        values: dict[str, pulumi.Input[str]] = {
            spec.primary_node: (primary.public_ip or "") if public else primary.private_ip,
            spec.shadow_node: shadow_ip,
        }
        for node, address in values.items():
            self.records[node] = aws.route53.Record(
                f"record-{node}",
                zone_id=spec.dns.zone_id,
                name=spec.dns.record_name,
                type="A",
                ttl=spec.dns.ttl_s,
                records=[address],
                set_identifier=node,
                weighted_routing_policies=[{"weight": weights[node]}],
                # The primary's weighted record usually exists already: adopt it.
                allow_overwrite=True,
                opts=pulumi.ResourceOptions(parent=self),
            )


def shadow_program(spec: AwsShadowSpec, facts: PreflightResult) -> Callable[[], None]:
    """The inline program; weights come from the stack config so ``up`` keeps a cutover."""

    def program() -> None:
        raw = pulumi.Config("shadowshift").get(WEIGHTS_CONFIG_KEY)
        weights = json.loads(raw) if raw else default_weights(spec)
        shadow = Ec2Shadow("shadow", Ec2ShadowArgs(spec=spec, facts=facts, weights=weights))
        pulumi.export("shadow_node", spec.shadow_node)
        pulumi.export("shadow_instance_id", shadow.instance.id)
        pulumi.export("shadow_private_ip", shadow.instance.private_ip)
        pulumi.export("availability_zone", facts.placement.availability_zone)
        pulumi.export("data_volume_id", shadow.data_volume.id)
        pulumi.export("source_snapshot_id", facts.snapshot_id)
        pulumi.export("weights", checked_weights(spec, weights))
        pulumi.export("tier", spec.tier)

    return program
