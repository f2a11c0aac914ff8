"""The ``aws`` section of a protection spec: where the EC2 instance runs and how traffic
reaches it (``docs/aws/protection-spec.example.yaml``).

Plain data, checked by :func:`validate_aws_section` (called by ``validate_spec``); what
needs AWS itself (does the subnet exist?) is the provisioning preflight's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DATA_VOLUME_STRATEGIES = ("auto", "snapshot", "fresh")
DNS_ADDRESSES = ("private", "public")

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d\Z")
_INSTANCE = re.compile(r"^i-[0-9a-f]{8}([0-9a-f]{9})?\Z")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?\Z")
_HOSTED_ZONE = re.compile(r"^(/hostedzone/)?[A-Z0-9]{1,32}\Z")
_RECORD_NAME = re.compile(
    r"^(?=.{1,253}\.?\Z)([a-z0-9_](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\.?\Z"
)
_LISTENER = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener/app/")
_TARGET_GROUP = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/")
_DEVICE = re.compile(r"^/dev/(sd[b-z]|xvd[b-z])\Z")
_PG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}\Z")
_TEMPORAL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?:\d{1,5}\Z")
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_DATA_ROOT = re.compile(r"^/[A-Za-z0-9._/-]{1,200}\Z")


class AwsSectionError(ValueError):
    """The ``aws`` section is invalid; the message starts with the field (``dns.ttl_s ...``)."""


@dataclass
class DnsRouting:
    """Route 53 weighted records: one record set per node, set identifier = node name."""

    hosted_zone_id: str
    """Hosted zone holding the service's name, e.g. ``Z0123456789ABCDEFGHIJ``."""
    record_name: str
    """The name clients resolve, e.g. ``db.example.com``."""
    ttl_s: int = 30
    """TTL of the weighted records. Resolvers may cache longer; keep it short (≤ 60)."""
    address: str = "private"
    """Which address of each instance the A record holds: ``private`` or ``public``."""

    @property
    def zone_id(self) -> str:
        """The bare zone id (without ``/hostedzone/``)."""
        return self.hosted_zone_id.removeprefix("/hostedzone/")


@dataclass
class AlbRouting:
    """An ALB listener whose default action forwards to one target group per node."""

    listener_arn: str
    """The service's listener; its default action becomes a weighted forward."""
    primary_target_group_arn: str
    """Target group holding the primary."""
    shadow_target_group_arn: str
    """Target group the shadow is registered in (weight 0 until cutover)."""
    target_port: int | None = None
    """Port to register the shadow on; ``None`` uses the target group's port."""


@dataclass
class PostgresApp:
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


@dataclass
class AwsAgent:
    """The node agent on the shadow's instance (``docs/aws``: closing "the shadow is never
    seeded"). The instance's user data installs its systemd unit and starts it; the agent
    polls the shadow node's queue on this Temporal and copies the standby from the primary.
    The AMI must carry ShadowShift (``/opt/shadowshift``) and PostgreSQL's binaries."""

    temporal_address: str
    """``host:port`` of the fleet's Temporal frontend, as the instance reaches it."""
    namespace: str = "default"
    """Temporal namespace of the protections."""
    data_root: str = "/var/lib/shadowshift/agent"
    """Where the agent keeps its servers: the shadow's data volume is mounted there."""
    boot_s: int = 600
    """How long the copy waits for the new instance's agent to take it (boot, user data)."""


@dataclass
class AwsSection:
    """One protected EC2 instance and where its shadow goes (``instance_id`` and ``tier`` come
    from the spec itself)."""

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
    data_volume: str = "auto"
    """``auto`` (snapshot for tier 3, fresh for tiers 1-2), ``snapshot`` or ``fresh``."""
    data_device_name: str = "/dev/sdf"
    """Device of the primary's data volume; the shadow's volume is attached at the same one."""
    postgres: PostgresApp | None = None
    """PostgreSQL streaming between the instances (tiers 1-2); required for a cutover there."""
    agent: AwsAgent | None = None
    """The node agent on the shadow's instance, which seeds its PostgreSQL (tiers 1-2;
    needs ``postgres``). Without it the shadow instance gets an empty volume."""
    stop_on_fence: bool = True
    """Stop a fenced instance (when reachable) so it cannot acknowledge writes. With
    ``postgres`` the planned fence makes the database refuse writes instead (read-only,
    sessions ended) and leaves the instance running, so it can rejoin as the new shadow; an
    emergency cutover still stops it."""


def _require(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise AwsSectionError(f"{name} {value!r} is invalid: expected {expected}")


def _text(value: object, pattern: re.Pattern[str]) -> bool:
    return isinstance(value, str) and bool(pattern.match(value))


def _port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def validate_aws_section(section: AwsSection, tier: int) -> AwsSection:
    """Return ``section`` if it is usable for a protection of ``tier``.

    Raises:
        AwsSectionError: the first invalid field, named as in the section (``dns.ttl_s``).
    """
    _require(_text(section.ec2_instance_id, _INSTANCE), "ec2_instance_id",
             section.ec2_instance_id, "an EC2 instance id like i-0123456789abcdef0")
    _require(_text(section.region, _REGION), "region", section.region,
             "an AWS region like eu-west-1")
    _require(_text(section.shadow_subnet_id, _SUBNET), "shadow_subnet_id",
             section.shadow_subnet_id, "a subnet id like subnet-0123456789abcdef0")
    _require(section.data_volume in DATA_VOLUME_STRATEGIES, "data_volume", section.data_volume,
             f"one of {DATA_VOLUME_STRATEGIES}")
    if tier == 3 and section.data_volume == "fresh":
        raise AwsSectionError("data_volume 'fresh' cannot serve tier 3: tier 3 ships EBS "
                              "snapshots; use 'snapshot' or 'auto'")
    _require(_text(section.data_device_name, _DEVICE), "data_device_name",
             section.data_device_name, "a data device like /dev/sdf or /dev/xvdf")
    _require(isinstance(section.stop_on_fence, bool), "stop_on_fence", section.stop_on_fence,
             "true or false")
    if section.dns is None and section.alb is None:
        raise AwsSectionError("dns and alb are both empty: give at least one way traffic "
                              "reaches the service")
    if section.dns is not None:
        _validate_dns(section.dns)
    if section.alb is not None:
        _validate_alb(section.alb)
    if section.postgres is not None:
        _validate_postgres(section.postgres)
    if section.agent is not None:
        _validate_agent(section.agent, section.postgres, tier)
    return section


def _validate_agent(agent: AwsAgent, postgres: PostgresApp | None, tier: int) -> None:
    if postgres is None or tier == 3:
        raise AwsSectionError("agent seeds the shadow's PostgreSQL by streaming replication: "
                              "it needs the postgres section and tier 1 or 2")
    address = agent.temporal_address
    _require(_text(address, _TEMPORAL) and 1 <= int(str(address).rsplit(":", 1)[1]) <= 65535,
             "agent.temporal_address", address, "host:port of Temporal, e.g. "
             "temporal.internal:7233")
    _require(_text(agent.namespace, _NAMESPACE), "agent.namespace", agent.namespace,
             "a Temporal namespace name")
    _require(_text(agent.data_root, _DATA_ROOT) and ".." not in str(agent.data_root),
             "agent.data_root", agent.data_root, "an absolute path without '..'")
    _require(isinstance(agent.boot_s, int) and not isinstance(agent.boot_s, bool)
             and 30 <= agent.boot_s <= 3600, "agent.boot_s", agent.boot_s,
             "seconds within 30..3600")


def _validate_dns(dns: DnsRouting) -> None:
    _require(_text(dns.hosted_zone_id, _HOSTED_ZONE), "dns.hosted_zone_id", dns.hosted_zone_id,
             "a Route 53 zone id like Z0123456789ABCDEFGHIJ")
    _require(isinstance(dns.record_name, str) and bool(_RECORD_NAME.match(
        dns.record_name.lower())), "dns.record_name", dns.record_name,
        "a fully qualified domain name like db.example.com")
    _require(isinstance(dns.ttl_s, int) and not isinstance(dns.ttl_s, bool)
             and 0 <= dns.ttl_s <= 86400, "dns.ttl_s", dns.ttl_s,
             "seconds within 0..86400 (≤ 60 recommended)")
    _require(dns.address in DNS_ADDRESSES, "dns.address", dns.address,
             f"one of {DNS_ADDRESSES}")


def _validate_alb(alb: AlbRouting) -> None:
    _require(_text(alb.listener_arn, _LISTENER), "alb.listener_arn", alb.listener_arn,
             "an application load balancer listener ARN")
    for name in ("primary_target_group_arn", "shadow_target_group_arn"):
        value = getattr(alb, name)
        _require(_text(value, _TARGET_GROUP), f"alb.{name}", value, "a target group ARN")
    if alb.primary_target_group_arn == alb.shadow_target_group_arn:
        raise AwsSectionError("alb.shadow_target_group_arn must differ from "
                              "alb.primary_target_group_arn: weights are set per target group")
    if alb.target_port is not None:
        _require(_port(alb.target_port), "alb.target_port", alb.target_port,
                 "a port within 1..65535")


def _validate_postgres(postgres: PostgresApp) -> None:
    _require(_port(postgres.port), "postgres.port", postgres.port, "a port within 1..65535")
    for name in ("user", "dbname"):
        value = getattr(postgres, name)
        _require(_text(value, _PG_NAME), f"postgres.{name}", value,
                 "a PostgreSQL name (letters, digits, _ and -, at most 63)")
