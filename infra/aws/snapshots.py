"""EBS snapshots of the primary's data volume: the tier-3 shadow's source and its lag."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from botocore.exceptions import WaiterError

from infra.aws.clients import AwsClients
from infra.aws.discovery import latest_snapshot
from infra.aws.errors import aws_errors
from infra.errors import InfraError
from infra.platform import ReplicationStatus

log = logging.getLogger(__name__)


def take_snapshot(
    clients: AwsClients, volume_id: str, instance_id: str, *, wait_timeout_s: float = 1800.0
) -> str:
    """Snapshot ``volume_id`` and wait until it is completed; return its id.

    A retry after a crash mid-wait takes another snapshot: harmless (it is newer), and the
    older one stays for the snapshot retention policy to expire.
    """
    with aws_errors("ec2", f"data volume {volume_id!r}"):
        snapshot = clients.ec2.create_snapshot(
            VolumeId=volume_id,
            Description=f"shadowshift seed of {instance_id}",
            TagSpecifications=[
                {
                    "ResourceType": "snapshot",
                    "Tags": [{"Key": "shadowshift:instance", "Value": instance_id}],
                }
            ],
        )
    snapshot_id = str(snapshot["SnapshotId"])
    log.info("Snapshot %s of %s started. Waiting for it to complete.", snapshot_id, volume_id)
    delay = 15
    with aws_errors("ec2", f"snapshot {snapshot_id!r}"):
        try:
            clients.ec2.get_waiter("snapshot_completed").wait(
                SnapshotIds=[snapshot_id],
                WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(wait_timeout_s // delay))},
            )
        except WaiterError as err:
            raise InfraError(f"snapshot {snapshot_id} did not complete: {err}") from err
    return snapshot_id


def snapshot_status(clients: AwsClients, volume_id: str) -> ReplicationStatus:
    """Tier 3: the shadow is as fresh as the newest completed snapshot of the data volume."""
    found = latest_snapshot(clients, volume_id)
    if found is None:
        return ReplicationStatus("archive", "none", None, None, None, volume_id)
    snapshot_id, started = found
    age_s = max(0.0, (datetime.now(UTC) - started).total_seconds())
    return ReplicationStatus(
        state="archive",
        sync_state="none",
        lag_bytes=None,
        lag_seconds=round(age_s, 3),
        replay_position=snapshot_id,
        primary_position=volume_id,
    )
