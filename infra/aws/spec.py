"""The AWS platform's view of a protection: one EC2 instance, where its shadow goes, how
traffic reaches it.

Built from the protection spec (``contracts.spec``; its ``aws`` section has the same fields
and is validated there, by :func:`contracts.spec_aws.validate_aws_section`) plus the spec's
``instance_id`` and ``tier``. Checks that need AWS (does the subnet exist?) live in
:mod:`infra.aws.discovery`.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.spec import ProtectionSpec
from contracts.spec_aws import (
    DATA_VOLUME_STRATEGIES,
    DNS_ADDRESSES,
    AlbRouting,
    AwsAgent,
    AwsSection,
    AwsSectionError,
    DnsRouting,
    PostgresApp,
    validate_aws_section,
)
from infra.errors import InvalidRequestError
from infra.names import validate_instance_id

__all__ = [
    "DATA_VOLUME_STRATEGIES", "DNS_ADDRESSES", "AlbRoutingSpec", "AwsShadowSpec",
    "DnsRoutingSpec", "PostgresAppSpec",
]

DnsRoutingSpec = DnsRouting
AlbRoutingSpec = AlbRouting
PostgresAppSpec = PostgresApp
TIERS = (1, 2, 3)


@dataclass(frozen=True, kw_only=True)
class AwsShadowSpec:
    """One protected EC2 instance and its shadow."""

    instance_id: str
    """ShadowShift's name of the protected service; names the stack and the router nodes."""
    ec2_instance_id: str
    """The primary EC2 instance, e.g. ``i-0123456789abcdef0``."""
    region: str
    """Region of the primary (and the shadow)."""
    shadow_subnet_id: str
    """Subnet of the shadow; must be in another availability zone than the primary."""
    dns: DnsRouting | None = None
    """Route 53 weighted routing, if clients resolve a name."""
    alb: AlbRouting | None = None
    """ALB weighted forwarding, if clients go through a load balancer."""
    tier: int = 2
    """1 synchronous, 2 asynchronous (application-level streaming), 3 EBS snapshots."""
    data_volume: str = "auto"
    """``auto`` (snapshot for tier 3, fresh for tiers 1-2), ``snapshot`` or ``fresh``."""
    data_device_name: str = "/dev/sdf"
    """Device of the primary's data volume; the shadow's volume is attached at the same one."""
    postgres: PostgresApp | None = None
    """PostgreSQL streaming between the instances (tiers 1-2); required for a cutover there."""
    stop_on_fence: bool = True
    """Stop a fenced instance (when reachable) so it cannot acknowledge writes; see
    :attr:`contracts.spec_aws.AwsSection.stop_on_fence`."""
    agent: AwsAgent | None = None
    """The node agent the shadow's instance starts (``contracts.spec_aws.AwsAgent``)."""

    def __post_init__(self) -> None:
        # Names become stack names and tags; the section's rules are the spec's own.
        validate_instance_id(self.instance_id)
        if self.tier not in TIERS:
            raise InvalidRequestError(f"tier {self.tier!r} is invalid: expected one of {TIERS}")
        try:
            validate_aws_section(self.section, self.tier)
        except AwsSectionError as err:
            raise InvalidRequestError(str(err)) from err

    @classmethod
    def from_spec(cls, spec: ProtectionSpec) -> AwsShadowSpec:
        """The AWS view of a protection spec.

        Raises:
            InvalidRequestError: the spec has no ``aws`` section or an invalid one.
        """
        if spec.aws is None:
            raise InvalidRequestError(f"{spec.instance_id} has no aws section")
        section = spec.aws
        return cls(instance_id=spec.instance_id, tier=spec.tier,
                   ec2_instance_id=section.ec2_instance_id, region=section.region,
                   shadow_subnet_id=section.shadow_subnet_id, dns=section.dns,
                   alb=section.alb, data_volume=section.data_volume,
                   data_device_name=section.data_device_name, postgres=section.postgres,
                   stop_on_fence=section.stop_on_fence, agent=section.agent)

    @property
    def section(self) -> AwsSection:
        """The spec's ``aws`` section this view was built from."""
        return AwsSection(
            ec2_instance_id=self.ec2_instance_id, region=self.region,
            shadow_subnet_id=self.shadow_subnet_id, dns=self.dns, alb=self.alb,
            data_volume=self.data_volume, data_device_name=self.data_device_name,
            postgres=self.postgres, stop_on_fence=self.stop_on_fence, agent=self.agent)

    @property
    def uses_snapshot(self) -> bool:
        """Whether the shadow's data volume is restored from the primary's latest snapshot."""
        return self.data_volume == "snapshot" or (self.data_volume == "auto" and self.tier == 3)

    @property
    def stack_name(self) -> str:
        """Pulumi stack of this instance's shadow."""
        return f"aws-shadow-{self.instance_id}"

    @property
    def primary_node(self) -> str:
        """Router name of the primary: its Route 53 set identifier."""
        return self.instance_id

    @property
    def shadow_node(self) -> str:
        """Router name of the shadow."""
        return f"{self.instance_id}-shadow"

    @property
    def nodes(self) -> tuple[str, str]:
        """Both nodes, primary first."""
        return (self.primary_node, self.shadow_node)
