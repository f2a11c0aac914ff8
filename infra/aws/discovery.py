"""Facts about the primary EC2 instance that its shadow copies: type, image, tags, network.

Read with boto3 before the Pulumi program runs, so the program stays a pure function of its
inputs (and testable under mocks) and bad input is refused before anything is created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from infra.aws.clients import AwsClients
from infra.aws.errors import aws_errors
from infra.aws.spec import AwsShadowSpec
from infra.errors import InvalidRequestError

NODE_TAG = "shadowshift:node"
"""Tag naming the router node an EC2 instance serves as (how the platform finds the shadow)."""
ROLE_TAG = "shadowshift:role"
"""Tag with the node's role: ``primary``, ``shadow`` or ``fenced``."""
SOURCE_SNAPSHOT_TAG = "shadowshift:source-snapshot"
"""Tag on the shadow's data volume naming the snapshot it was restored from (lineage)."""


@dataclass(frozen=True)
class DataVolumeFacts:
    """The primary's data volume, which the shadow's volume mirrors in size and kind."""

    volume_id: str
    """EBS volume id."""
    size_gib: int
    """Size in GiB."""
    volume_type: str
    """``gp3``, ``io2``..."""
    iops: int | None = None
    """Provisioned IOPS, when the type has them."""
    throughput: int | None = None
    """Provisioned throughput (gp3), MiB/s."""
    encrypted: bool = False
    """Whether the volume is encrypted (the shadow's is too, with the same key)."""
    kms_key_id: str | None = None
    """KMS key of an encrypted volume."""


@dataclass(frozen=True)
class PrimaryFacts:
    """What the shadow copies from the primary."""

    ec2_instance_id: str
    """The primary instance."""
    instance_type: str
    """Instance type, e.g. ``m6i.large``."""
    image_id: str
    """AMI of the instance (or of its launch template when the instance's AMI is gone)."""
    availability_zone: str
    """The primary's zone; the shadow must be elsewhere."""
    subnet_id: str
    """The primary's subnet."""
    vpc_id: str
    """The primary's VPC (security groups belong to it)."""
    security_group_ids: tuple[str, ...]
    """Security groups the shadow gets too."""
    private_ip: str
    """Private IPv4 address."""
    state: str
    """EC2 state name (``running``, ``stopped``...)."""
    public_ip: str | None = None
    """Public IPv4 address, if any."""
    key_name: str | None = None
    """SSH key pair, if any."""
    tags: dict[str, str] = field(default_factory=dict)
    """User tags (``aws:`` tags are reserved and left out)."""
    data_volume: DataVolumeFacts | None = None
    """The volume at the spec's data device, if attached."""


def describe_instance(clients: AwsClients, ec2_instance_id: str, what: str) -> dict[str, Any]:
    """The DescribeInstances entry of one instance.

    Raises:
        InvalidRequestError: it does not exist (``what`` names the field to fix).
    """
    with aws_errors("ec2", what):
        reservations = clients.ec2.describe_instances(InstanceIds=[ec2_instance_id])
    instances = [i for r in reservations["Reservations"] for i in r["Instances"]]
    if not instances:
        raise InvalidRequestError(f"{what} does not exist")
    instance: dict[str, Any] = instances[0]
    return instance


def find_node_instance(clients: AwsClients, node: str) -> dict[str, Any] | None:
    """The live (not terminated) EC2 instance tagged as router node ``node``, if any."""
    with aws_errors("ec2"):
        reservations = clients.ec2.describe_instances(
            Filters=[{"Name": f"tag:{NODE_TAG}", "Values": [node]}]
        )
    live = [
        i
        for r in reservations["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
    return live[0] if live else None


def inspect_primary(clients: AwsClients, spec: AwsShadowSpec) -> PrimaryFacts:
    """Read the primary's facts; refuse a missing or terminated instance, naming the field."""
    what = f"ec2_instance_id {spec.ec2_instance_id!r}"
    instance = describe_instance(clients, spec.ec2_instance_id, what)
    state = instance["State"]["Name"]
    if state in ("terminated", "shutting-down"):
        raise InvalidRequestError(f"{what} is {state}; there is nothing left to protect")
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    return PrimaryFacts(
        ec2_instance_id=spec.ec2_instance_id,
        instance_type=instance["InstanceType"],
        image_id=_usable_image(clients, instance, tags),
        availability_zone=instance["Placement"]["AvailabilityZone"],
        subnet_id=instance["SubnetId"],
        vpc_id=instance["VpcId"],
        security_group_ids=tuple(g["GroupId"] for g in instance.get("SecurityGroups", [])),
        private_ip=instance["PrivateIpAddress"],
        state=state,
        public_ip=instance.get("PublicIpAddress"),
        key_name=instance.get("KeyName"),
        tags={k: v for k, v in tags.items() if not k.startswith("aws:")},
        data_volume=_data_volume(clients, instance, spec.data_device_name),
    )


def latest_snapshot(clients: AwsClients, volume_id: str) -> tuple[str, datetime] | None:
    """The newest *completed* snapshot of ``volume_id`` and its start time, if any."""
    with aws_errors("ec2", f"data volume {volume_id!r}"):
        pages = clients.ec2.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [volume_id]}]
        )
        snapshots = [s for page in pages for s in page["Snapshots"]]
    completed = [s for s in snapshots if s.get("State") == "completed"]
    if not completed:
        return None
    newest = max(completed, key=lambda s: s["StartTime"])
    return newest["SnapshotId"], newest["StartTime"]


def _usable_image(clients: AwsClients, instance: dict[str, Any], tags: dict[str, str]) -> str:
    """The instance's AMI, or its launch template's when the AMI was deregistered since."""
    image_id = str(instance["ImageId"])
    with aws_errors("ec2", f"AMI {image_id!r} of the primary"):
        images = clients.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    if images:
        return image_id
    template_id = tags.get("aws:ec2launchtemplate:id")
    if template_id:
        with aws_errors("ec2", f"launch template {template_id!r} of the primary"):
            versions = clients.ec2.describe_launch_template_versions(
                LaunchTemplateId=template_id, Versions=["$Latest"]
            )["LaunchTemplateVersions"]
        template_image = versions[0]["LaunchTemplateData"].get("ImageId") if versions else None
        if template_image:
            return str(template_image)
    raise InvalidRequestError(
        f"the primary's AMI {image_id} no longer exists and no launch template names another; "
        "register an image of the primary and retry"
    )


def _data_volume(
    clients: AwsClients, instance: dict[str, Any], device_name: str
) -> DataVolumeFacts | None:
    mapping = next(
        (m for m in instance.get("BlockDeviceMappings", []) if m["DeviceName"] == device_name),
        None,
    )
    if mapping is None or "Ebs" not in mapping:
        return None
    volume_id = mapping["Ebs"]["VolumeId"]
    with aws_errors("ec2", f"data volume {volume_id!r}"):
        volume = clients.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return DataVolumeFacts(
        volume_id=volume_id,
        size_gib=int(volume["Size"]),
        volume_type=str(volume.get("VolumeType", "gp3")),
        iops=volume.get("Iops") if volume.get("VolumeType") in ("io1", "io2", "gp3") else None,
        throughput=volume.get("Throughput") if volume.get("VolumeType") == "gp3" else None,
        encrypted=bool(volume.get("Encrypted", False)),
        kms_key_id=volume.get("KmsKeyId"),
    )
