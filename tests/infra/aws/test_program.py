"""The pulumi-aws shadow program under ``pulumi.runtime.set_mocks`` (no provider plugin)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from contracts.spec import SpecError, spec_from_dict, validate_spec
from contracts.spec_aws import AwsAgent, PostgresApp
from infra.aws.program import Ec2Shadow, Ec2ShadowArgs, shadow_program
from infra.errors import InvalidRequestError
from tests.infra.aws.factories import PRIMARY_TG, SHADOW_TG, make_facts, make_spec


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource's inputs; invents ids and the outputs the program reads."""

    def __init__(self) -> None:
        self.resources: dict[str, tuple[str, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources[args.name] = (args.typ, dict(args.inputs))
        state = dict(args.inputs)
        if args.typ == "aws:ec2/instance:Instance":
            state.update(privateIp="10.0.2.20", publicIp="203.0.113.7")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None

    def inputs(self, name: str) -> dict[str, Any]:
        return self.resources[name][1]


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(recording, project="shadowshift", stack="test", preview=False)
    yield recording


def build(args: Ec2ShadowArgs) -> pulumi.Output[Any]:
    shadow = Ec2Shadow("shadow", args)
    return pulumi.Output.all(shadow.instance.id, shadow.data_volume.id, shadow.attachment.id)


def test_shadow_copies_type_image_tags_and_groups_in_another_zone(mocks: RecordingMocks) -> None:
    """The shadow is the primary's twin (type, AMI, groups, tags) in the other subnet and zone."""
    spec, facts = make_spec(), make_facts()

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        return build(Ec2ShadowArgs(spec=spec, facts=facts, weights={}))

    run()
    instance = mocks.inputs("instance")
    assert instance["instanceType"] == "m6i.large"
    assert instance["ami"] == "ami-0abcdef1234567890"
    assert instance["subnetId"] == "subnet-0bbbbbbbbbbbbbbbb"
    assert instance["availabilityZone"] == "eu-west-1b" != facts.primary.availability_zone
    assert instance["vpcSecurityGroupIds"] == list(facts.primary.security_group_ids)
    assert instance["tags"]["team"] == "payments"
    assert instance["tags"]["Name"] == "orders-db-shadow"
    assert instance["tags"]["shadowshift:node"] == "orders-db-shadow"
    # The primary's own role label must not be copied onto the shadow.
    assert instance["tags"]["shadowshift:role"] == "shadow"


def test_tier3_volume_comes_from_the_latest_snapshot(mocks: RecordingMocks) -> None:
    """Tier 3 restores the data volume from the snapshot, tagged with its lineage, same zone."""
    spec, facts = make_spec(tier=3), make_facts("snap-0feedfeedfeedfeed")

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        return build(Ec2ShadowArgs(spec=spec, facts=facts, weights={}))

    run()
    volume = mocks.inputs("data")
    assert volume["snapshotId"] == "snap-0feedfeedfeedfeed"
    assert volume["tags"]["shadowshift:source-snapshot"] == "snap-0feedfeedfeedfeed"
    assert volume["tags"]["shadowshift:source-volume"] == "vol-0123456789abcdef0"
    assert volume["availabilityZone"] == "eu-west-1b"
    assert "size" not in volume
    attachment = mocks.inputs("data-attachment")
    assert attachment["deviceName"] == "/dev/sdf"
    assert attachment["volumeId"] == "data-id" and attachment["instanceId"] == "instance-id"


def test_tier2_volume_is_fresh_with_the_primary_size_and_kind(mocks: RecordingMocks) -> None:
    """Tiers 1-2 get an empty volume like the primary's; streaming fills it."""
    spec, facts = make_spec(tier=2), make_facts(None)

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        return build(Ec2ShadowArgs(spec=spec, facts=facts, weights={}))

    run()
    volume = mocks.inputs("data")
    assert "snapshotId" not in volume
    assert (volume["size"], volume["type"], volume["iops"], volume["throughput"]) == (
        200,
        "gp3",
        6000,
        250,
    )


def test_weights_and_target_group_wiring(mocks: RecordingMocks) -> None:
    """One weighted record per node (100/0 by default), the shadow in the shadow target group."""
    spec = make_spec()

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        return build(Ec2ShadowArgs(spec=spec, facts=make_facts(), weights={}))

    run()
    primary = mocks.inputs("record-orders-db")
    shadow = mocks.inputs("record-orders-db-shadow")
    assert primary["setIdentifier"] == "orders-db" and shadow["setIdentifier"] == "orders-db-shadow"
    assert primary["weightedRoutingPolicies"] == [{"weight": 100}]
    assert shadow["weightedRoutingPolicies"] == [{"weight": 0}]
    assert primary["records"] == ["10.0.1.10"] and shadow["records"] == ["10.0.2.20"]
    assert primary["ttl"] == shadow["ttl"] == 30
    target = mocks.inputs("shadow-target")
    assert target["targetGroupArn"] == SHADOW_TG != PRIMARY_TG
    assert target["targetId"] == "instance-id" and target["port"] == 5432


def test_program_reads_weights_from_stack_config(mocks: RecordingMocks) -> None:
    """After a cutover the config holds 0/100, and the program writes exactly that."""
    pulumi.runtime.set_config(
        "shadowshift:weights", json.dumps({"orders-db": 0, "orders-db-shadow": 100})
    )
    try:
        program = shadow_program(make_spec(alb=None), make_facts())
        pulumi.runtime.test(program)()
    finally:
        # set_config writes into a process-wide dict that later inline programs would see.
        pulumi.runtime.config.CONFIG.get().pop("shadowshift:weights", None)
    assert mocks.inputs("record-orders-db")["weightedRoutingPolicies"] == [{"weight": 0}]
    assert mocks.inputs("record-orders-db-shadow")["weightedRoutingPolicies"] == [{"weight": 100}]
    assert "shadow-target" not in mocks.resources  # no ALB in this spec


def test_bad_weights_and_missing_snapshot_are_refused(mocks: RecordingMocks) -> None:
    """Unknown nodes, weights outside 0..100 and tier 3 without a snapshot fail by name."""
    with pytest.raises(InvalidRequestError, match=r"outside 0\.\.100"):
        Ec2Shadow(
            "s1", Ec2ShadowArgs(spec=make_spec(), facts=make_facts(), weights={"orders-db": 101})
        )
    with pytest.raises(InvalidRequestError, match="unknown node 'other'"):
        Ec2Shadow("s2", Ec2ShadowArgs(spec=make_spec(), facts=make_facts(), weights={"other": 1}))
    with pytest.raises(InvalidRequestError, match="no completed snapshot"):
        Ec2Shadow("s3", Ec2ShadowArgs(spec=make_spec(tier=3), facts=make_facts(None), weights={}))


def test_with_an_agent_the_instance_boots_into_its_agent(mocks: RecordingMocks) -> None:
    """With ``agent`` the shadow instance's user data mounts its own data volume and starts
    the node agent for the shadow's node on the fleet's Temporal; a valid bash script. Without
    it there is no user data."""
    agent = AwsAgent(temporal_address="temporal.internal:7233", namespace="shadowshift")
    spec = make_spec(tier=1, postgres=PostgresApp(), agent=agent)

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        return build(Ec2ShadowArgs(spec=spec, facts=make_facts(None), weights={}))

    run()
    script = mocks.inputs("instance")["userData"]
    assert script.startswith("#!/bin/bash\n")
    assert "volume=data-id\n" in script  # the shadow's own volume, by its id
    assert "--host orders-db-shadow --address $address" in script
    assert "Environment=SHADOWSHIFT_TEMPORAL_ADDRESS=temporal.internal:7233" in script
    assert "Environment=SHADOWSHIFT_NAMESPACE=shadowshift" in script
    assert "systemctl enable --now shadowshift-agent.service" in script
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr

    mocks.resources.clear()

    @pulumi.runtime.test
    def without() -> pulumi.Output[Any]:
        return build(Ec2ShadowArgs(spec=make_spec(tier=2), facts=make_facts(None), weights={}))

    without()
    assert "userData" not in mocks.inputs("instance")


@pytest.mark.parametrize(("agent", "field"), [
    ({"temporal_address": "temporal.internal"}, "agent.temporal_address"),
    ({"temporal_address": "$(reboot):7233"}, "agent.temporal_address"),
    ({"temporal_address": "t:7233", "namespace": "a b"}, "agent.namespace"),
    ({"temporal_address": "t:7233", "data_root": "/var/../etc"}, "agent.data_root"),
    ({"temporal_address": "t:7233", "boot_s": 5}, "agent.boot_s"),
])
def test_a_bad_agent_section_is_refused_naming_the_field(agent: dict[str, Any],
                                                         field: str) -> None:
    """What the user data would carry is checked first: nothing reaches a shell unchecked."""
    document = {"instance_id": "orders-db", "platform": "aws", "tier": 1, "aws": {
        "ec2_instance_id": "i-0123456789abcdef0", "region": "eu-west-1",
        "shadow_subnet_id": "subnet-0bbbbbbbbbbbbbbbb", "postgres": {},
        "dns": {"hosted_zone_id": "Z0123456789ABCDEFGHIJ", "record_name": "db.example.com"},
        "agent": agent}}
    with pytest.raises(SpecError, match=f"aws.{field}"):
        validate_spec(spec_from_dict(document))


def test_an_agent_needs_postgres_and_streaming() -> None:
    """The agent seeds PostgreSQL by streaming: tier 3 or no postgres section is refused."""
    with pytest.raises(InvalidRequestError, match="needs the postgres section"):
        make_spec(tier=2, agent=AwsAgent(temporal_address="t:7233"))
