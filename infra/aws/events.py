"""EC2 scheduled events and impaired status checks, as events the lifecycle reports.

``DescribeInstanceStatus`` lists the maintenance AWS has planned for an instance:
``system-maintenance``, ``system-reboot``, ``instance-reboot``, ``instance-stop`` and
``instance-retirement``. Each one still ahead becomes an :class:`InstanceEvent`; the protection
workflow turns it into a ``report_event`` signal (kind and detail), which raises the risk before
the instance goes down on AWS's schedule. Impaired status checks become events too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.aws.errors import aws_errors

RISK_BY_CODE = {
    "instance-retirement": "high",
    "instance-stop": "high",
    "system-maintenance": "medium",
    "system-reboot": "medium",
    "instance-reboot": "medium",
    "system-status-impaired": "high",
    "instance-status-impaired": "high",
}
"""How much an event should raise the risk: ``high`` ones mean the instance will go away."""

_DONE = ("[Completed]", "[Canceled]")


@dataclass(frozen=True)
class InstanceEvent:
    """One thing AWS says will happen (or is happening) to an instance."""

    ec2_instance_id: str
    """The affected instance."""
    code: str
    """EC2 event code (``instance-retirement``...) or ``*-status-impaired``."""
    description: str
    """AWS's description."""
    not_before: datetime | None = None
    """Earliest start of a scheduled event."""
    not_after: datetime | None = None
    """Latest end of a scheduled event."""
    event_id: str = ""
    """AWS's event id (``instance-event-...``); stable, so repeats can be recognised."""

    @property
    def kind(self) -> str:
        """The ``report_event`` kind."""
        return self.code

    @property
    def risk(self) -> str:
        """``high`` or ``medium``."""
        return RISK_BY_CODE.get(self.code, "medium")

    @property
    def detail(self) -> str:
        """One sentence for the operator (and the ``report_event`` detail)."""
        when = f" from {self.not_before:%Y-%m-%d %H:%M %Z}" if self.not_before else ""
        return f"{self.ec2_instance_id}: {self.description}{when}".strip()


def instance_events(ec2: Any, ec2_instance_ids: list[str]) -> list[InstanceEvent]:
    """Pending scheduled events and impaired status checks of the given instances."""
    events: list[InstanceEvent] = []
    with aws_errors("ec2"):
        pages = ec2.get_paginator("describe_instance_status").paginate(
            InstanceIds=ec2_instance_ids, IncludeAllInstances=True
        )
        statuses = [s for page in pages for s in page["InstanceStatuses"]]
    for status in statuses:
        instance_id = status["InstanceId"]
        events.extend(_scheduled(instance_id, status.get("Events", [])))
        for check in ("SystemStatus", "InstanceStatus"):
            if status.get(check, {}).get("Status") == "impaired":
                prefix = "system" if check == "SystemStatus" else "instance"
                events.append(
                    InstanceEvent(
                        instance_id,
                        f"{prefix}-status-impaired",
                        f"the {prefix} status check is failing",
                    )
                )
    return events


def _scheduled(instance_id: str, raw_events: list[dict[str, Any]]) -> list[InstanceEvent]:
    return [
        InstanceEvent(
            ec2_instance_id=instance_id,
            code=event["Code"],
            description=event.get("Description", ""),
            not_before=event.get("NotBefore"),
            not_after=event.get("NotAfter"),
            event_id=event.get("InstanceEventId", ""),
        )
        for event in raw_events
        if not str(event.get("Description", "")).startswith(_DONE)
    ]
