"""The protection spec: what an operator asks ShadowShift to protect, validated.

Pure and deterministic, so workflow update validators can use it; the same checks run at the
edges (CLI, starters) before any workflow exists. Every error names the field and the values
it may take.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from infra.aws.spec_loader import load_spec as load_aws_spec
from infra.errors import InvalidRequestError

PLATFORMS = ("local", "aws")
"""Platforms a protection may name (each has an implementation in ``infra.factory``)."""
PLANNED_PLATFORMS = ("kubernetes",)
"""Named in the design, refused with a clear message until implemented."""
TIERS = (1, 2, 3)
PROFILES = ("default", "spec")
FAILOVER_AFTER_S = 10.0
"""Default time a local serving node may not answer before it is failed over: longer than a
PostgreSQL restart or a stall in a busy checkpoint (a few seconds), short next to Patroni's
30-s leader TTL because the probe is direct, not through a consensus store."""
_INSTANCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,46}[a-z0-9]$")


class SpecError(ValueError):
    """A protection spec or policy is invalid; the message names the field."""


@dataclass
class PolicySpec:
    """When the protection may act on its own."""

    threshold: float = 60.0
    """Readiness score (0..100) at or above which a reading counts as high."""
    consecutive_readings: int = 3
    """High readings in a row before migrating (hysteresis), 1..100."""
    cooldown_s: float = 3600.0
    """Minimum time between two automatic cutovers of this instance, 0..7 days."""
    advisory: bool = False
    """Recommend only: never cut over automatically."""
    profile: str = "default"
    """Readiness profile: ``default`` (monotone) or ``spec`` (the specification's formula)."""
    failover_after_s: float = FAILOVER_AFTER_S
    """A serving node down this long (local: not answering; AWS: its instance not running)
    is failed over to the shadow (an emergency cutover); 0 turns automatic failover off.
    0 or 3..3600."""


@dataclass
class PolicyChange:
    """What ``set_policy`` sends: the fields given replace the policy's, the others stay (so
    ``{"threshold": 70}`` cannot silently turn ``advisory`` off)."""

    threshold: float | None = None
    consecutive_readings: int | None = None
    cooldown_s: float | None = None
    advisory: bool | None = None
    profile: str | None = None
    failover_after_s: float | None = None

    def applied_to(self, policy: PolicySpec) -> PolicySpec:
        """``policy`` with this change's given fields."""
        return replace(policy, **{k: v for k, v in asdict(self).items() if v is not None})


@dataclass
class ProtectionSpec:
    """One instance to protect."""

    instance_id: str
    """2-48 characters of a-z, 0-9 and '-'; names the workflow, the stack and the router entry."""
    platform: str = "local"
    """Where the instance runs: local, aws or kubernetes."""
    tier: int = 2
    """1 synchronous (RPO 0), 2 asynchronous streaming, 3 WAL shipping on an interval."""
    primary_port: int = 0
    """Local platform: port of the primary PostgreSQL."""
    shadow_port: int = 0
    """Local platform: port for the shadow."""
    router_port: int = 0
    """Local platform: HAProxy frontend port of the service."""
    policy: PolicySpec = field(default_factory=PolicySpec)
    """Decision policy."""
    sync_strict: bool = False
    """Tier 1: never stop waiting for a lost shadow; commits block until it streams again
    (Patroni's ``synchronous_mode_strict``). False: after 10 s without a streaming shadow,
    commits stop waiting for it (RPO > 0, reported) until it streams again."""
    standing_shadow: bool = True
    """False (tier 3 only): no shadow until the fleet's shadow planner grants one when the
    instance's risk rises (``workflows/shadow_on_demand.py``)."""
    aws: dict[str, Any] = field(default_factory=dict)
    """Platform aws only: the AWS section (EC2 instance, shadow subnet, Route 53 and/or ALB,
    postgres), as in ``docs/aws/protection-spec.example.yaml``; ``instance_id`` and ``tier``
    come from the spec itself. Checked by ``infra.aws.spec_loader``."""

    @property
    def workflow_id(self) -> str:
        """The protection's workflow id: one protection per instance."""
        return protection_workflow_id(self.instance_id)


def protection_workflow_id(instance_id: str) -> str:
    """Workflow id of ``instance_id``'s protection; the id makes a second protection a join."""
    return f"protect-{instance_id}"


def validate_policy(policy: PolicySpec) -> PolicySpec:
    """Return ``policy`` if it is consistent, else raise :class:`SpecError`."""
    if not 0 <= policy.threshold <= 100:
        raise SpecError(f"policy.threshold {policy.threshold} is outside 0..100")
    if not 1 <= policy.consecutive_readings <= 100:
        raise SpecError(
            f"policy.consecutive_readings {policy.consecutive_readings} is outside 1..100"
        )
    if not 0 <= policy.cooldown_s <= 7 * 86400:
        raise SpecError(f"policy.cooldown_s {policy.cooldown_s} is outside 0..604800")
    if policy.profile not in PROFILES:
        raise SpecError(f"policy.profile {policy.profile!r}: allowed values are {PROFILES}")
    if policy.failover_after_s != 0 and not 3 <= policy.failover_after_s <= 3600:
        raise SpecError(f"policy.failover_after_s {policy.failover_after_s} is outside 3..3600 "
                        "(0 turns automatic failover off)")
    return policy


def validate_spec(spec: ProtectionSpec) -> ProtectionSpec:
    """Return ``spec`` if it is valid, else raise :class:`SpecError` naming the field."""
    if not isinstance(spec.instance_id, str) or not _INSTANCE_ID.match(spec.instance_id):
        raise SpecError(
            f"instance_id {spec.instance_id!r}: use 2-48 characters of a-z, 0-9 and '-', "
            "starting with a letter and not ending with '-'"
        )
    if spec.platform in PLANNED_PLATFORMS:
        raise SpecError(f"platform {spec.platform!r} is not implemented yet; allowed values "
                        f"are {', '.join(PLATFORMS)}")
    if spec.platform not in PLATFORMS:
        raise SpecError(f"platform {spec.platform!r}: allowed values are {', '.join(PLATFORMS)}")
    if spec.tier not in TIERS:
        raise SpecError(f"tier {spec.tier!r}: allowed values are 1, 2, 3")
    if not isinstance(spec.sync_strict, bool):
        raise SpecError(f"sync_strict {spec.sync_strict!r}: use true or false")
    if not spec.standing_shadow and spec.tier != 3:
        raise SpecError(f"standing_shadow false needs tier 3 (tier {spec.tier} instances always "
                        "keep a shadow); set tier: 3 or standing_shadow: true")
    if spec.platform == "local":
        ports = {
            "primary_port": spec.primary_port,
            "shadow_port": spec.shadow_port,
            "router_port": spec.router_port,
        }
        for name, port in ports.items():
            if not isinstance(port, int) or not 1024 <= port <= 65535:
                raise SpecError(f"{name} {port!r} is outside 1024..65535")
        if len(set(ports.values())) != 3:
            raise SpecError("primary_port, shadow_port and router_port must differ")
    if spec.platform == "aws":
        validate_aws_section(spec)
    elif spec.aws:
        raise SpecError(f"aws: only for platform aws (this spec's platform is {spec.platform}); "
                        "remove the section or set platform: aws")
    validate_policy(spec.policy)
    return spec


def validate_aws_section(spec: ProtectionSpec) -> None:
    """Check the ``aws`` section as the AWS platform will read it (no AWS call here: that is
    the provision's preflight). Errors are prefixed ``aws.`` plus the field they name."""
    if not isinstance(spec.aws, dict) or not spec.aws:
        raise SpecError("platform aws needs the aws section (ec2_instance_id, region, "
                        "shadow_subnet_id, dns and/or alb); see "
                        "docs/aws/protection-spec.example.yaml")
    data = dict(spec.aws)
    for name in ("instance_id", "tier"):
        given, own = data.get(name), getattr(spec, name)
        if given is not None and given != own:
            raise SpecError(f"aws.{name} {given!r} contradicts the spec's {name} {own!r}; "
                            "leave it out of the aws section")
        data[name] = own
    try:
        load_aws_spec(data)
    except InvalidRequestError as err:
        message = str(err)
        for prefix in ("unknown field(s) ", "missing field(s) "):
            if message.startswith(prefix):  # name the first field first, for the line
                names = message[len(prefix):].split(";")[0].split(", ")
                raise SpecError(f"aws.{names[0]}: {message}") from err
        raise SpecError(f"aws.{message}" if _STARTS_WITH_FIELD.match(message)
                        else f"aws: {message}") from err


_STARTS_WITH_FIELD = re.compile(r"^[a-z_]+(\.[a-z_]+)* ")


def shadow_platform_spec(spec: ProtectionSpec) -> dict[str, Any]:
    """What ``ShadowRequest.platform_spec`` carries for ``spec`` (empty for local)."""
    return dict(spec.aws) if spec.platform == "aws" else {}
