"""The spec file follows the dataclasses: every field loads, the aws section is checked with
line and field, and a join compares against the running memo with defaults filled in."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from contracts.policy import Policy
from contracts.spec import ProtectionSpec, spec_from_dict, spec_to_dict
from contracts.spec_aws import AwsSection, DnsRouting
from contracts.spec_hosts import HostPlacement, HostsSection
from contracts.spec_kubernetes import KubernetesSection
from workers.cli_protect import _differences, running_spec
from workers.cli_spec import SpecFileError, load_spec_file

AWS = """\
instance_id: orders-db
platform: aws
tier: 2
aws:
  ec2_instance_id: i-0123456789abcdef0
  region: eu-west-1
  shadow_subnet_id: subnet-0bbbbbbbbbbbbbbbb
  postgres:
    port: 5432
  dns:
    hosted_zone_id: Z0123456789ABCDEFGHIJ
    record_name: db.example.com
    ttl_s: 30
"""


def _non_default(cls: type, **given: object) -> object:
    """An instance of ``cls`` whose every field differs from its default (or is ``given``)."""
    values: dict[str, object] = {}
    for item in dataclasses.fields(cls):
        if item.name in given:
            values[item.name] = given[item.name]
            continue
        default = item.default if item.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            values[item.name] = not default
        elif isinstance(default, str):
            values[item.name] = "spec" if item.name == "profile" else default
        elif isinstance(default, int | float):
            values[item.name] = type(default)(default + 1)
    return cls(**values)


def test_every_dataclass_field_round_trips_through_a_spec_file(tmp_path: Path) -> None:
    """A spec with every ProtectionSpec and Policy field set away from its default is
    written as YAML and read back equal: no field is unknown to the loader."""
    policy = _non_default(Policy)
    local = _non_default(ProtectionSpec, instance_id="db-orders", platform="local", tier=3,
                         primary_port=5433, shadow_port=5434, router_port=6433, policy=policy,
                         aws=None, hosts=None, kubernetes=None, decode_errors=[],
                         replication_user="replicator")
    aws = ProtectionSpec("orders-db", "aws", tier=3, standing_shadow=False, policy=policy,
                         aws=AwsSection(ec2_instance_id="i-0123456789abcdef0",
                                        region="eu-west-1",
                                        shadow_subnet_id="subnet-0bbbbbbbbbbbbbbbb",
                                        dns=DnsRouting(hosted_zone_id="Z0123456789ABCDEFGHIJ",
                                                       record_name="db.example.com")))
    hosts = ProtectionSpec("orders-db", "hosts", tier=1, primary_port=5432, shadow_port=5432,
                           router_port=6432, policy=policy,
                           hosts=HostsSection(HostPlacement("db-a", "198.18.0.10"),
                                              HostPlacement("db-b", "198.18.0.11"),
                                              fleet_index=0, router_source="198.18.0.2"))
    kubernetes = ProtectionSpec(
        "orders-db", "kubernetes", tier=1, primary_port=5432, shadow_port=5432,
        router_port=6432, policy=policy,
        kubernetes=_non_default(KubernetesSection, namespace="databases",
                                primary_pod="orders-db-0", storage_class="fast-ssd",
                                storage_size="20Gi", image="postgres:17.2",
                                agent_image="registry.example.com/shadowshift-agent:1",
                                route="orders-db", node_selector="pool=databases",
                                fleet_index=3))
    covered: set[str] = set()
    for spec in (local, aws, hosts, kubernetes):
        path = tmp_path / f"{spec.platform}.yaml"  # type: ignore[attr-defined]
        path.write_text(yaml.safe_dump(spec_to_dict(spec)))  # type: ignore[arg-type]
        assert load_spec_file(path) == spec
        covered |= {f.name for f in dataclasses.fields(ProtectionSpec)
                    if getattr(spec, f.name) != getattr(ProtectionSpec("x-y"), f.name)}
    assert covered == {f.name for f in dataclasses.fields(ProtectionSpec)} - {"decode_errors"}


def test_aws_spec_file_loads_the_section(tmp_path: Path) -> None:
    """The aws section reaches the spec typed, and as JSON it is the same spec again."""
    path = tmp_path / "spec.yaml"
    path.write_text(AWS)
    spec = load_spec_file(path)
    assert spec.aws is not None and spec.aws.dns is not None and spec.aws.postgres is not None
    assert (spec.platform, spec.aws.dns.ttl_s, spec.aws.postgres.port) == ("aws", 30, 5432)
    assert spec_from_dict(spec_to_dict(spec)) == spec


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("  region: eu-west-1\n", "  region: eu-west-1\n  colour: blue\n",
         ":7: aws.colour: unknown field"),
        ("    hosted_zone_id: Z0123456789ABCDEFGHIJ", "    hosted_zone_id: not a zone",
         ":11: aws.dns.hosted_zone_id 'not a zone' is invalid"),
        ("    ttl_s: 30", "    ttl_s: 90000", ":13: aws.dns.ttl_s 90000 is invalid"),
        ("    port: 5432", "    port: 0", ":9: aws.postgres.port 0 is invalid"),
        ("  region: eu-west-1\n", "", ":4: aws.region: required"),
        ("tier: 2", "tier: 3\nstanding_shadow: maybe",
         ":4: standing_shadow: expected true or false"),
        ("  ec2_instance_id: i-0123456789abcdef0\n",
         "  ec2_instance_id: i-0123456789abcdef0\n  tier: 1\n",
         ":6: aws.tier: unknown field"),
        ("platform: aws", "platform: openstack",
         ":2: platform 'openstack': allowed values are local, aws, hosts, kubernetes"),
        ("platform: aws", "platform: local\nprimary_port: 5433\nshadow_port: 5434\n"
         "router_port: 6433", ":7: aws: only for platform aws"),
        ("tier: 2", "tier: 2\narchive_interval_s: 0", ":4: archive_interval_s 0 is outside"),
    ],
)
def test_aws_spec_mistakes_name_line_and_field(
    tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    """Each mistake in (or about) the aws section is reported as file:line: field: what."""
    assert replace in AWS
    path = tmp_path / "spec.yaml"
    path.write_text(AWS.replace(replace, by, 1))
    with pytest.raises(SpecFileError) as error:
        load_spec_file(path)
    assert str(error.value).startswith(f"{path}{expected}"), str(error.value)


def test_aws_platform_without_its_section_is_refused(tmp_path: Path) -> None:
    """platform aws alone cannot be protected, and the section must be a mapping: the
    message says what the section needs."""
    path = tmp_path / "spec.yaml"
    path.write_text("instance_id: orders-db\nplatform: aws\n")
    with pytest.raises(SpecFileError, match=r":2: platform aws needs the aws section"):
        load_spec_file(path)
    path.write_text("instance_id: orders-db\nplatform: aws\naws: yes\n")
    with pytest.raises(SpecFileError, match=r":3: aws: expected a mapping of fields"):
        load_spec_file(path)


def test_join_after_upgrade_compares_with_defaults_filled_in(tmp_path: Path) -> None:
    """A memo written before standing_shadow and aws existed still matches the same spec
    today, while a real change (the threshold) is still named."""
    path = tmp_path / "spec.yaml"
    path.write_text(AWS)
    wanted = load_spec_file(path)
    old_memo = spec_to_dict(wanted)
    del old_memo["standing_shadow"]
    old_memo["retired_field"] = 1
    assert _differences(running_spec(old_memo), spec_to_dict(wanted)) == []
    old_memo["policy"] = {"threshold": 70.0}
    assert _differences(running_spec(old_memo), spec_to_dict(wanted)) == [
        "policy.threshold 70.0 -> 60.0"
    ]
    old_memo["aws"] = {**spec_to_dict(wanted)["aws"], "region": "us-east-1"}
    assert "aws.region 'us-east-1' -> 'eu-west-1'" in _differences(
        running_spec(old_memo), spec_to_dict(wanted))
