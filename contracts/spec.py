"""The protection spec: what an operator asks ShadowShift to protect, in one typed shape.

The same :class:`ProtectionSpec` travels from the YAML file (``shadowshift protect``), a JSON
file (``temporal workflow start --input-file``) or a program, through the protection
workflow and its activities, to the platform that builds the shadow. It is validated by one
function, :func:`validate_spec`, at the edges (the CLI, before anything starts) and in the
workflow's first step (whoever started it), and nowhere else.

:func:`spec_from_dict` builds a spec from plain data (parsed JSON or YAML). Strict, it refuses
unknown fields and wrong types by name; lenient, as the worker decodes workflow inputs
(``contracts.wire``), it records them in :attr:`ProtectionSpec.decode_errors`, which
:func:`validate_spec` then refuses. A decoding failure would otherwise be a workflow *task*
failure, retried forever, instead of a clear, final refusal.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.policy import Policy, PolicyError, validate_policy
from contracts.spec_aws import AwsSection, AwsSectionError, validate_aws_section
from contracts.spec_hosts import HostsSection, HostsSectionError, validate_hosts_section
from contracts.spec_kubernetes import (
    KubernetesSection,
    KubernetesSectionError,
    validate_kubernetes_section,
)

PLATFORMS = ("local", "aws", "hosts", "kubernetes")
"""Platforms a protection may name (each is a package under ``infra/`` and a line of
``infra.factory``)."""
TIERS = (1, 2, 3)
_INSTANCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,46}[a-z0-9]\Z")
_PG_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}\Z")


class SpecError(ValueError):
    """A protection spec is invalid; the message starts with the field it names."""


@dataclass
class ProtectionSpec:
    """One instance to protect."""

    instance_id: str
    """2-48 characters of a-z, 0-9 and '-'; names the workflow, the stack and the router
    entry."""
    platform: str = "local"
    """Where the instance runs: ``local`` (this machine), ``hosts`` (hosts with node agents),
    ``aws`` or ``kubernetes``."""
    tier: int = 2
    """1 synchronous (RPO 0), 2 asynchronous streaming, 3 WAL shipping on an interval."""
    primary_port: int = 0
    """Local, hosts and kubernetes platforms: port of the primary PostgreSQL."""
    shadow_port: int = 0
    """Local, hosts and kubernetes platforms: port for the shadow."""
    router_port: int = 0
    """Local, hosts and kubernetes platforms: HAProxy frontend port of the service (on the
    control worker's machine)."""
    policy: Policy = field(default_factory=Policy)
    """Decision policy."""
    sync_strict: bool = False
    """Tier 1: never stop waiting for a lost shadow; commits block until it streams again
    (Patroni's ``synchronous_mode_strict``). False: after 10 s without a streaming shadow,
    commits stop waiting for it (RPO > 0, reported) until it streams again."""
    standing_shadow: bool = True
    """False (tier 3 only): no shadow until the fleet's shadow planner grants one when the
    instance's risk rises (``workflows/shadow_on_demand.py``)."""
    replication_user: str = "postgres"
    """Local platform: the role the shadow replicates as (it needs ``REPLICATION``)."""
    archive_interval_s: int = 10
    """Tier 3: longest time before written WAL is shipped to the shadow, 1..3600 (the RPO
    bound of tier 3)."""
    aws: AwsSection | None = None
    """Platform aws only: the EC2 instance, the shadow's subnet, Route 53 and/or ALB,
    PostgreSQL (``docs/aws/protection-spec.example.yaml``)."""
    hosts: HostsSection | None = None
    """Platform hosts only: the primary's and the shadow's hosts."""
    kubernetes: KubernetesSection | None = None
    """Platform kubernetes only: the primary pod, the shadow's storage and route."""
    decode_errors: list[str] = field(default_factory=list)
    """Set only by lenient decoding: unknown fields and wrong types found in the input, each
    as ``field: what is wrong``. :func:`validate_spec` refuses a spec that has any."""

    @property
    def workflow_id(self) -> str:
        """The protection's workflow id: one protection per instance."""
        return protection_workflow_id(self.instance_id)


def protection_workflow_id(instance_id: str) -> str:
    """Workflow id of ``instance_id``'s protection; the id makes a second protection a join."""
    return f"protect-{instance_id}"


def validate_spec(spec: ProtectionSpec) -> ProtectionSpec:
    """Return ``spec`` if it is valid, else raise :class:`SpecError` naming the field."""
    if spec.decode_errors:
        raise SpecError(spec.decode_errors[0])
    if not isinstance(spec.instance_id, str) or not _INSTANCE_ID.match(spec.instance_id):
        raise SpecError(
            f"instance_id {spec.instance_id!r}: use 2-48 characters of a-z, 0-9 and '-', "
            "starting with a letter and not ending with '-'"
        )
    if spec.platform not in PLATFORMS:
        raise SpecError(f"platform {spec.platform!r}: allowed values are {', '.join(PLATFORMS)}")
    if spec.tier not in TIERS or isinstance(spec.tier, bool):
        raise SpecError(f"tier {spec.tier!r}: allowed values are 1, 2, 3")
    for name in ("sync_strict", "standing_shadow"):
        if not isinstance(getattr(spec, name), bool):
            raise SpecError(f"{name} {getattr(spec, name)!r}: use true or false")
    interval = spec.archive_interval_s
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= 3600:
        raise SpecError(f"archive_interval_s {interval!r} is outside 1..3600")
    if not isinstance(spec.replication_user, str) or not _PG_ROLE.match(spec.replication_user):
        raise SpecError(f"replication_user {spec.replication_user!r}: use a PostgreSQL role "
                        "name (letters, digits, _ and -, at most 63)")
    if not spec.standing_shadow and spec.tier != 3:
        raise SpecError(f"standing_shadow false needs tier 3 (tier {spec.tier} instances always "
                        "keep a shadow); set tier: 3 or standing_shadow: true")
    if spec.platform in ("local", "hosts", "kubernetes"):
        _validate_ports(spec)
    elif spec.primary_port or spec.shadow_port or spec.router_port:
        raise SpecError(f"primary_port: only for platforms local, hosts and kubernetes (this "
                        f"spec's platform is {spec.platform}); remove the ports")
    if spec.platform == "hosts":
        if spec.hosts is None:
            raise SpecError("platform hosts needs the hosts section (primary and shadow, each "
                            "with host and address); see docs/operations.md")
        try:
            validate_hosts_section(spec.hosts)
        except HostsSectionError as err:
            raise SpecError(f"hosts.{err}") from err
    elif spec.hosts is not None:
        raise SpecError(f"hosts: only for platform hosts (this spec's platform is "
                        f"{spec.platform}); remove the section or set platform: hosts")
    if spec.platform == "aws":
        if spec.aws is None:
            raise SpecError("platform aws needs the aws section (ec2_instance_id, region, "
                            "shadow_subnet_id, dns and/or alb); see "
                            "docs/aws/protection-spec.example.yaml")
        try:
            validate_aws_section(spec.aws, spec.tier)
        except AwsSectionError as err:
            raise SpecError(f"aws.{err}") from err
    elif spec.aws is not None:
        raise SpecError(f"aws: only for platform aws (this spec's platform is {spec.platform}); "
                        "remove the section or set platform: aws")
    _validate_kubernetes(spec)
    try:
        validate_policy(spec.policy)
    except PolicyError as err:
        raise SpecError(str(err)) from err
    return spec


def _validate_kubernetes(spec: ProtectionSpec) -> None:
    if spec.platform == "kubernetes":
        if spec.kubernetes is None:
            raise SpecError("platform kubernetes needs the kubernetes section (namespace, "
                            "primary_pod, storage_class); see docs/kubernetes.md")
        try:
            validate_kubernetes_section(spec.kubernetes)
        except KubernetesSectionError as err:
            raise SpecError(f"kubernetes.{err}") from err
        if spec.tier == 3:
            raise SpecError("tier 3 is not available on platform kubernetes: it ships WAL "
                            "through a shared archive the pods do not have; use tier 1 or 2")
    elif spec.kubernetes is not None:
        raise SpecError(f"kubernetes: only for platform kubernetes (this spec's platform is "
                        f"{spec.platform}); remove the section or set platform: kubernetes")


def _validate_ports(spec: ProtectionSpec) -> None:
    ports = {"primary_port": spec.primary_port, "shadow_port": spec.shadow_port,
             "router_port": spec.router_port}
    for name, port in ports.items():
        if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
            raise SpecError(f"{name} {port!r} is outside 1024..65535")
    if spec.platform == "local" and len(set(ports.values())) != 3:
        raise SpecError("primary_port, shadow_port and router_port must differ")
    if spec.platform != "local" and spec.router_port in (spec.primary_port, spec.shadow_port):
        raise SpecError("router_port must differ from primary_port and shadow_port")


# -- from plain data ---------------------------------------------------------------------------

_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def spec_from_dict(data: Mapping[str, Any], *, strict: bool = True) -> ProtectionSpec:
    """Build a spec from plain data (parsed JSON or YAML), checking field names and types.

    Values are not judged here (that is :func:`validate_spec`), only their shape.

    Raises:
        SpecError: strict only: an unknown field, a wrong type or a missing ``instance_id``,
            named with its dotted path (``aws.dns.ttl_s``).
    """
    problems: list[str] = []
    if isinstance(data, Mapping) and "decode_errors" in data:
        # A spec encoded by a client carries its (empty) list; its entries stay problems.
        carried = data["decode_errors"]
        problems += [_carried(p) for p in carried] if isinstance(carried, list) else []
        data = {k: v for k, v in data.items() if k != "decode_errors"}
    values = _fields_of(ProtectionSpec, data, "", problems)
    if "instance_id" not in values:
        problems.append("instance_id: required (the instance to protect)")
        values["instance_id"] = ""
    if problems and strict:
        raise SpecError(problems[0])
    return ProtectionSpec(**values, decode_errors=problems)


def _fields_of(cls: type, data: object, prefix: str, problems: list[str]) -> dict[str, Any]:
    """Known fields of dataclass ``cls`` found in ``data`` and of the right shape; every
    other key or value is described in ``problems`` and left out (its default applies)."""
    where = prefix.rstrip(".") or "the spec"
    if not isinstance(data, Mapping):
        problems.append(f"{where}: expected a mapping of fields, got {type(data).__name__}")
        return {}
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "decode_errors"}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            problems.append(f"{prefix}{shown_name(key)}: unknown field; allowed: "
                            f"{', '.join(sorted(known))}")
            continue
        converted = _value_of(hints[key], value, name, problems)
        if converted is not _SKIP:
            values[key] = converted
    return values


_SKIP = object()
_CARRIED_HEAD = re.compile(r"the spec|[a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_]+)*")


def _carried(entry: object) -> str:
    """A problem carried in a spec's ``decode_errors`` as this module wrote it; anything else
    (a client can send any list) becomes a problem naming ``decode_errors`` itself, so a
    forged entry cannot pose as another field's refusal or add lines to the message."""
    if isinstance(entry, str) and entry.isprintable() and len(entry) <= 1000:
        head, separator, _ = entry.partition(": ")
        if separator and _CARRIED_HEAD.fullmatch(head):
            return entry
    return (f"decode_errors: {str(entry)[:80]!r} is not a problem this decoder reports; the "
            "field is filled while decoding, leave it out")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def shown_name(name: object) -> str:
    """A field name as typed, or quoted when it is not a plain name: a line break or a
    terminal escape in a hostile key must not forge more lines in an error message."""
    text = str(name)
    return text if _PLAIN_NAME.fullmatch(text) else repr(text)


def _value_of(hint: Any, value: object, name: str, problems: list[str]) -> object:
    """``value`` converted to ``hint`` (dataclasses built, ints accepted for floats), or
    ``_SKIP`` with the reason in ``problems``."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if optional:
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        hint = inner[0]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        nested = _fields_of(hint, value, f"{name}.", problems)
        try:
            return hint(**nested)
        except TypeError:  # a required field of the section is missing
            missing = [f.name for f in dataclasses.fields(hint) if f.name not in nested
                       and f.default is dataclasses.MISSING
                       and f.default_factory is dataclasses.MISSING]
            problems.append(f"{name}.{missing[0]}: required" if missing else f"{name}: invalid")
            return _SKIP
    if typing.get_origin(hint) is list:
        if isinstance(value, list):
            (item,) = typing.get_args(hint) or (object,)
            if not (dataclasses.is_dataclass(item) and isinstance(item, type)):
                return list(value)
            items = [_value_of(item, v, f"{name}[{i}]", problems) for i, v in enumerate(value)]
            return [v for v in items if v is not _SKIP]
        problems.append(f"{name}: expected a list, got {value!r}")
        return _SKIP
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in _KINDS and (not isinstance(value, hint) or (hint is not bool
                                                             and isinstance(value, bool))):
        problems.append(f"{name}: expected {_KINDS[hint]}, got {value!r}")
        return _SKIP
    return value


def spec_to_dict(spec: ProtectionSpec) -> dict[str, Any]:
    """The spec as plain data (what :func:`spec_from_dict` reads back), without empty
    ``decode_errors`` and without the sections of other platforms."""
    data = dataclasses.asdict(spec)
    if not data["decode_errors"]:
        del data["decode_errors"]
    for section in ("hosts", "kubernetes"):  # added after "aws": absent from older memos
        if data[section] is None:
            del data[section]
    return data
