"""Stopping, starting and labelling the EC2 instances behind a service.

What fencing on AWS can and cannot guarantee:

- The ALB stops sending *new* requests to a target group at weight 0 as soon as
  ``ModifyListener`` returns; requests already in flight finish.
- Route 53 answers with the new weights once the change is ``INSYNC``, but resolvers and
  clients that cached the old answer keep using it for up to the TTL, and some (JVMs with
  ``networkaddress.cache.ttl=-1``, long-lived connection pools) much longer. DNS alone cannot
  fence anything.
- So a fenced instance is also **stopped** when EC2 says it runs: a stopped instance
  acknowledges nothing, whoever still has its address. If the host is unreachable, a normal stop
  may hang; we then force-stop. If EC2 cannot stop it at all, fencing fails loudly rather than
  pretend.
- Stopping keeps EBS volumes and the private IP; a public IP that is not an Elastic IP changes
  when the instance starts again, and instance-store data is lost.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import WaiterError

from infra.aws.discovery import ROLE_TAG
from infra.aws.errors import aws_errors
from infra.errors import InfraError

log = logging.getLogger(__name__)

_RUNNING = ("pending", "running")
_STOPPED = ("stopping", "stopped")


class InstanceControl:
    """EC2 state changes with bounded waits."""

    def __init__(self, ec2: Any, *, wait_timeout_s: float = 120.0, poll_s: float = 5.0) -> None:
        self._ec2 = ec2
        self._attempts = max(1, int(wait_timeout_s // poll_s))
        self._poll_s = int(max(1, poll_s))

    def state(self, ec2_instance_id: str) -> str:
        """EC2 state name (``running``, ``stopped``...)."""
        with aws_errors("ec2", f"instance {ec2_instance_id!r}"):
            reservations = self._ec2.describe_instances(InstanceIds=[ec2_instance_id])
        return str(reservations["Reservations"][0]["Instances"][0]["State"]["Name"])

    def stop(self, ec2_instance_id: str) -> bool:
        """Stop the instance and wait until it is stopped; ``False`` if it was not running."""
        if self.state(ec2_instance_id) not in (*_RUNNING, "stopping"):
            return False
        with aws_errors("ec2", f"instance {ec2_instance_id!r}"):
            self._ec2.stop_instances(InstanceIds=[ec2_instance_id])
        if self._wait("instance_stopped", ec2_instance_id):
            return True
        log.warning("Instance %s did not stop in time. Forcing it.", ec2_instance_id)
        with aws_errors("ec2", f"instance {ec2_instance_id!r}"):
            self._ec2.stop_instances(InstanceIds=[ec2_instance_id], Force=True)
        if not self._wait("instance_stopped", ec2_instance_id):
            raise InfraError(f"instance {ec2_instance_id} would not stop, even when forced")
        return True

    def start(self, ec2_instance_id: str) -> bool:
        """Start the instance and wait until it runs; ``False`` if it was already running."""
        state = self.state(ec2_instance_id)
        if state in _RUNNING:
            return False
        if state == "stopping":
            self._wait("instance_stopped", ec2_instance_id)
        with aws_errors("ec2", f"instance {ec2_instance_id!r}"):
            self._ec2.start_instances(InstanceIds=[ec2_instance_id])
        if not self._wait("instance_running", ec2_instance_id):
            raise InfraError(f"instance {ec2_instance_id} did not reach running in time")
        return True

    def role(self, ec2_instance_id: str) -> str | None:
        """The ``shadowshift:role`` tag, if set."""
        with aws_errors("ec2", f"instance {ec2_instance_id!r}"):
            tags = self._ec2.describe_tags(
                Filters=[
                    {"Name": "resource-id", "Values": [ec2_instance_id]},
                    {"Name": "key", "Values": [ROLE_TAG]},
                ]
            )["Tags"]
        return str(tags[0]["Value"]) if tags else None

    def set_role(self, ec2_instance_id: str, role: str) -> None:
        """Label the instance ``primary``, ``shadow`` or ``fenced`` (absolute, idempotent)."""
        with aws_errors("ec2", f"instance {ec2_instance_id!r}"):
            self._ec2.create_tags(
                Resources=[ec2_instance_id], Tags=[{"Key": ROLE_TAG, "Value": role}]
            )

    def _wait(self, waiter_name: str, ec2_instance_id: str) -> bool:
        waiter = self._ec2.get_waiter(waiter_name)
        # WaiterError is a BotoCoreError: catch it before aws_errors turns it into InfraError.
        with aws_errors("ec2", f"instance {ec2_instance_id!r}"):
            try:
                waiter.wait(
                    InstanceIds=[ec2_instance_id],
                    WaiterConfig={"Delay": self._poll_s, "MaxAttempts": self._attempts},
                )
            except WaiterError:
                return False
        return True
