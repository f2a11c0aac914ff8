"""The AWS protection spec: one EC2 instance, where its shadow goes, how traffic reaches it.

Every check names the field to fix, so a spec loaded from YAML (see
``docs/aws/protection-spec.example.yaml``) fails with a message the operator can act on.
Checks that need AWS (does the subnet exist?) live in :mod:`infra.aws.discovery`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.errors import InvalidRequestError
from infra.names import validate_instance_id

TIERS = (1, 2, 3)
DATA_VOLUME_STRATEGIES = ("auto", "snapshot", "fresh")
DNS_ADDRESSES = ("private", "public")

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_EC2_ID = {
    "instance": re.compile(r"^i-[0-9a-f]{8}([0-9a-f]{9})?$"),
    "subnet": re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$"),
}
_HOSTED_ZONE = re.compile(r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
_RECORD_NAME = re.compile(
    r"^(?=.{1,253}\.?$)([a-z0-9_](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\.?$"
)
_ARN = {
    "listener": re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener/app/"),
    "targetgroup": re.compile(
        r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/"
    ),
}
_DEVICE = re.compile(r"^/dev/(sd[b-z]|xvd[b-z])$")
_PG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")


def _require(ok: bool, field: str, value: object, expected: str) -> None:
    if not ok:
        raise InvalidRequestError(f"{field} {value!r} is invalid: expected {expected}")


@dataclass(frozen=True, kw_only=True)
class DnsRoutingSpec:
    """Route 53 weighted records: one record set per node, set identifier = node name."""

    hosted_zone_id: str
    """Hosted zone holding the service's name, e.g. ``Z0123456789ABCDEFGHIJ``."""
    record_name: str
    """The name clients resolve, e.g. ``db.example.com``."""
    ttl_s: int = 30
    """TTL of the weighted records. Resolvers may cache longer; keep it short (≤ 60)."""
    address: str = "private"
    """Which address of each instance the A record holds: ``private`` or ``public``."""

    def __post_init__(self) -> None:
        _require(
            bool(_HOSTED_ZONE.match(str(self.hosted_zone_id))),
            "dns.hosted_zone_id",
            self.hosted_zone_id,
            "a Route 53 zone id like Z0123456789ABCDEFGHIJ",
        )
        _require(
            bool(_RECORD_NAME.match(str(self.record_name).lower())),
            "dns.record_name",
            self.record_name,
            "a fully qualified domain name like db.example.com",
        )
        _require(
            isinstance(self.ttl_s, int) and 0 <= self.ttl_s <= 86400,
            "dns.ttl_s",
            self.ttl_s,
            "seconds within 0..86400 (≤ 60 recommended)",
        )
        _require(
            self.address in DNS_ADDRESSES, "dns.address", self.address, f"one of {DNS_ADDRESSES}"
        )

    @property
    def zone_id(self) -> str:
        """The bare zone id (without ``/hostedzone/``)."""
        return self.hosted_zone_id.removeprefix("/hostedzone/")


@dataclass(frozen=True, kw_only=True)
class AlbRoutingSpec:
    """An ALB listener whose default action forwards to one target group per node."""

    listener_arn: str
    """The service's listener; its default action becomes a weighted forward."""
    primary_target_group_arn: str
    """Target group holding the primary."""
    shadow_target_group_arn: str
    """Target group the shadow is registered in (weight 0 until cutover)."""
    target_port: int | None = None
    """Port to register the shadow on; ``None`` uses the target group's port."""

    def __post_init__(self) -> None:
        _require(
            bool(_ARN["listener"].match(str(self.listener_arn))),
            "alb.listener_arn",
            self.listener_arn,
            "an application load balancer listener ARN",
        )
        for name in ("primary_target_group_arn", "shadow_target_group_arn"):
            value = getattr(self, name)
            _require(
                bool(_ARN["targetgroup"].match(str(value))),
                f"alb.{name}",
                value,
                "a target group ARN",
            )
        if self.primary_target_group_arn == self.shadow_target_group_arn:
            raise InvalidRequestError(
                "alb.shadow_target_group_arn must differ from alb.primary_target_group_arn: "
                "weights are set per target group"
            )
        if self.target_port is not None:
            _require(
                isinstance(self.target_port, int) and 1 <= self.target_port <= 65535,
                "alb.target_port",
                self.target_port,
                "a port within 1..65535",
            )


@dataclass(frozen=True, kw_only=True)
class PostgresAppSpec:
    """PostgreSQL on both instances, streaming from the primary (tiers 1-2).

    The worker talks to each instance's PostgreSQL at its private IP (or the address in the
    instance's ``shadowshift:endpoint`` tag, e.g. a tunnel) to fence, catch up and promote.
    Passwords come from libpq's usual places (``PGPASSWORD``, ``~/.pgpass``), never the spec.
    """

    port: int = 5432
    """Port PostgreSQL listens on, on both instances."""
    user: str = "postgres"
    """Role with superuser rights (read-only switch, promotion, ending sessions)."""
    dbname: str = "postgres"
    """Database the worker connects to (and writes its cutover check row in)."""

    def __post_init__(self) -> None:
        _require(
            isinstance(self.port, int) and 1 <= self.port <= 65535,
            "postgres.port",
            self.port,
            "a port within 1..65535",
        )
        for name in ("user", "dbname"):
            value = getattr(self, name)
            _require(
                isinstance(value, str) and bool(_PG_NAME.match(value)),
                f"postgres.{name}",
                value,
                "a PostgreSQL name (letters, digits, _ and -, at most 63)",
            )


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
    dns: DnsRoutingSpec | None = None
    """Route 53 weighted routing, if clients resolve a name."""
    alb: AlbRoutingSpec | None = None
    """ALB weighted forwarding, if clients go through a load balancer."""
    tier: int = 2
    """1 synchronous, 2 asynchronous (application-level streaming), 3 EBS snapshots."""
    data_volume: str = "auto"
    """``auto`` (snapshot for tier 3, fresh for tiers 1-2), ``snapshot`` or ``fresh``."""
    data_device_name: str = "/dev/sdf"
    """Device of the primary's data volume; the shadow's volume is attached at the same one."""
    postgres: PostgresAppSpec | None = None
    """PostgreSQL streaming between the instances (tiers 1-2); required for a cutover there."""
    stop_on_fence: bool = True
    """Stop a fenced instance (when reachable) so it cannot acknowledge writes.

    Applies when no application fences the writes. With ``postgres`` the planned fence makes
    the database refuse writes instead (read-only, sessions ended) and leaves the instance
    running, so it can rejoin as the new shadow; an emergency cutover still stops it.
    """

    def __post_init__(self) -> None:
        validate_instance_id(self.instance_id)
        _require(
            bool(_EC2_ID["instance"].match(str(self.ec2_instance_id))),
            "ec2_instance_id",
            self.ec2_instance_id,
            "an EC2 instance id like i-0123456789abcdef0",
        )
        _require(
            bool(_REGION.match(str(self.region))),
            "region",
            self.region,
            "an AWS region like eu-west-1",
        )
        _require(
            bool(_EC2_ID["subnet"].match(str(self.shadow_subnet_id))),
            "shadow_subnet_id",
            self.shadow_subnet_id,
            "a subnet id like subnet-0123456789abcdef0",
        )
        _require(self.tier in TIERS, "tier", self.tier, f"one of {TIERS}")
        _require(
            self.data_volume in DATA_VOLUME_STRATEGIES,
            "data_volume",
            self.data_volume,
            f"one of {DATA_VOLUME_STRATEGIES}",
        )
        if self.tier == 3 and self.data_volume == "fresh":
            raise InvalidRequestError(
                "data_volume 'fresh' cannot serve tier 3: tier 3 ships EBS snapshots; "
                "use 'snapshot' or 'auto'"
            )
        _require(
            bool(_DEVICE.match(str(self.data_device_name))),
            "data_device_name",
            self.data_device_name,
            "a data device like /dev/sdf or /dev/xvdf",
        )
        if self.dns is None and self.alb is None:
            raise InvalidRequestError(
                "dns and alb are both empty: give at least one way traffic reaches the service"
            )

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
