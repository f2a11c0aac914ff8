"""AWS protections in the fleet watcher: CloudWatch samples and EC2 scheduled events.

Cost (why the cadences differ from the local path's 15 s):

- CloudWatch publishes EC2 metrics every minute (detailed monitoring) or every 5 minutes
  (basic), and ``GetMetricData`` is billed per metric requested ($0.01 per 1,000). Reading
  every 15 s would pay four times for the same datapoint, so AWS protections are read once per
  ``period_s`` (60 s): 5 metrics plus 4 per data volume, about 540 metrics, ~$0.005, per
  instance-hour with one volume. The fleet's queries share calls (500 queries per call).
- A reading is a new sample only when CloudWatch has a datapoint newer than the last one kept;
  repeating a datapoint would count one minute twice in the model's window and in the
  policy's "N readings in a row" hysteresis.
- ``DescribeInstanceStatus`` (free, rate-limited) is polled every ``events_interval_s``
  (5 minutes): AWS schedules maintenance days ahead. Each new event is sent once as a
  ``report_event`` signal (one Temporal action); the keys of events sent travel in the
  watcher's heartbeat, so a restarted watcher does not send them again.
- Which instance serves (the spec's ``ec2_instance_id``, or the shadow found by its
  ``shadowshift:node`` tag once a cutover labelled it ``shadowshift:role=primary``) and its
  data volumes are looked up at discovery (every 30 s) with two ``DescribeInstances`` calls
  per region for the whole fleet. The same answer carries each instance's state, which the
  failover rule reads (:mod:`activities.failover_monitor`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.aws.clients import AwsClients
from infra.aws.discovery import NODE_TAG, ROLE_TAG
from infra.aws.errors import aws_errors
from infra.aws.events import InstanceEvent, instance_events
from infra.aws.factory import clients_for
from infra.aws.metrics import CloudWatchMetricsCollector, read_many
from infra.aws.spec import AwsShadowSpec
from infra.aws.spec_loader import load_spec
from models.metrics import MetricSample

SEVERITY_BY_RISK = {"high": 1.0, "medium": 0.5}
"""``report_event`` severity of an :class:`InstanceEvent` risk (the protection adds
``severity * EVENT_POINTS`` to the latest readiness score)."""

_FILTER_VALUES = 200
"""DescribeInstances accepts at most 200 values per filter."""


@dataclass
class AwsTarget:
    """What the watcher reads for one AWS protection: the serving instance and its volumes."""

    spec: AwsShadowSpec
    """The protection's AWS spec (from its memo)."""
    ec2_instance_id: str
    """The instance traffic goes to."""
    node: str
    """Its router node name (the primary's or the shadow's)."""
    volume_ids: tuple[str, ...] = ()
    """Its data volume(s) for the EBS latency."""
    running: bool = True
    """EC2 says the serving instance is ``running`` (not stopping, stopped or gone)."""
    standby_running: bool = False
    """The other node's instance exists and is ``running`` (a shadow to fail over to)."""


def aws_spec_of(memo_spec: dict[str, Any]) -> AwsShadowSpec:
    """The AWS spec of a protection from the spec in its memo (``instance_id`` and ``tier``
    from the spec itself, as the platform builds it)."""
    data = dict(memo_spec.get("aws") or {})
    data["instance_id"], data["tier"] = memo_spec["instance_id"], int(memo_spec.get("tier", 2))
    return load_spec(data)


class AwsWatcher:
    """Locates, reads and polls the fleet's AWS instances (blocking: run it in a thread)."""

    def __init__(self, clients: Callable[[str], AwsClients] = clients_for) -> None:
        self._clients = clients

    def locate(self, specs: dict[str, AwsShadowSpec]) -> dict[str, AwsTarget]:
        """The serving instance of each protection (by ``instance_id``); a protection whose
        instances cannot be found is left out (and logged by the caller)."""
        targets: dict[str, AwsTarget] = {}
        for region, members in _by_region(specs).items():
            ec2 = self._clients(region).ec2
            # By id, in any state: a terminated primary is still described for about an hour,
            # which is how failover learns it is gone. Shadows by tag, only those that exist:
            # a replaced shadow's terminated instance carries the same tag.
            primaries = _describe(ec2, "instance-id", [s.ec2_instance_id for s in members],
                                  states=None)
            shadows = _describe(ec2, f"tag:{NODE_TAG}", [s.shadow_node for s in members])
            # A stopped old shadow may still carry the tag beside its running replacement.
            by_node = {_tags(i).get(NODE_TAG): i for i in sorted(shadows, key=_running)}
            by_id = {i["InstanceId"]: i for i in primaries}
            for spec in members:
                nodes = [(spec.primary_node, by_id.get(spec.ec2_instance_id)),
                         (spec.shadow_node, by_node.get(spec.shadow_node))]
                found = [(node, i) for node, i in nodes if i is not None]
                # Cutovers move the role tag; before the first one only the primary exists. A
                # primary that was already stopped when it was failed over keeps its tag (the
                # cutover stops and retags only a running node): the running one serves.
                serving = min(
                    (pair for pair in found if _tags(pair[1]).get(ROLE_TAG) == "primary"),
                    key=lambda pair: not _running(pair[1]),
                    default=found[0] if found and found[0][0] == spec.primary_node else None)
                if serving is not None:
                    node, instance = serving
                    others = [i for n, i in found if n != node]
                    targets[spec.instance_id] = AwsTarget(
                        spec, instance["InstanceId"], node, _volumes(instance, spec),
                        running=_running(instance),
                        standby_running=bool(others) and _running(others[0]))
        return targets

    def read(self, targets: dict[str, AwsTarget], period_s: int = 60,
             now: datetime | None = None) -> dict[str, MetricSample]:
        """The latest CloudWatch sample of each target (batched per region); ``period_s``
        must match the instances' monitoring (60 detailed, 300 basic)."""
        samples: dict[str, MetricSample] = {}
        by_region: dict[str, list[AwsTarget]] = {}
        for target in targets.values():
            by_region.setdefault(target.spec.region, []).append(target)
        for region, members in by_region.items():
            collectors = [
                CloudWatchMetricsCollector(
                    self._clients(region).cloudwatch, t.spec.instance_id, t.ec2_instance_id,
                    volume_ids=t.volume_ids, period_s=period_s, id_prefix=f"q{index}_")
                for index, t in enumerate(members)
            ]
            readings = read_many(self._clients(region).cloudwatch, collectors,
                                 now or datetime.now(UTC))
            for target, reading in zip(members, readings, strict=True):
                if reading.raw:  # no datapoint at all: nothing to add to the window
                    samples[target.spec.instance_id] = reading.sample
        return samples

    def events(self, targets: dict[str, AwsTarget]) -> dict[str, list[InstanceEvent]]:
        """Pending scheduled events and impaired checks of each target's serving instance."""
        owners: dict[str, dict[str, str]] = {}
        for target in targets.values():
            owners.setdefault(target.spec.region, {})[target.ec2_instance_id] = \
                target.spec.instance_id
        found: dict[str, list[InstanceEvent]] = {iid: [] for iid in targets}
        for region, by_ec2 in owners.items():
            ids = list(by_ec2)
            for start in range(0, len(ids), 100):  # DescribeInstanceStatus: 100 ids per call
                for event in instance_events(self._clients(region).ec2, ids[start:start + 100]):
                    found[by_ec2[event.ec2_instance_id]].append(event)
        return found


def event_key(event: InstanceEvent) -> str:
    """Stable identity of an event: AWS's event id, or the code for an impaired check."""
    return f"{event.ec2_instance_id}/{event.event_id or event.code}"


def new_events(sent: set[str], events: dict[str, list[InstanceEvent]],
               polled: set[str]) -> list[tuple[str, InstanceEvent]]:
    """Events of ``events`` (by instance id) not in ``sent``, as (instance id, event).

    Keys of ``polled`` EC2 instances that AWS no longer lists are forgotten, so a status check
    that is impaired again later is reported again (scheduled events have fresh ids)."""
    current = {event_key(e) for found in events.values() for e in found}
    sent.difference_update({k for k in sent if k.split("/")[0] in polled and k not in current})
    return [(iid, e) for iid, found in events.items() for e in found if event_key(e) not in sent]


def event_signal(event: InstanceEvent) -> dict[str, Any]:
    """The ``report_event`` payload (an ``ExternalEvent``) of an EC2 event."""
    return {"kind": event.kind, "detail": event.detail,
            "severity": SEVERITY_BY_RISK.get(event.risk, 0.5)}


def _by_region(specs: dict[str, AwsShadowSpec]) -> dict[str, list[AwsShadowSpec]]:
    regions: dict[str, list[AwsShadowSpec]] = {}
    for spec in specs.values():
        regions.setdefault(spec.region, []).append(spec)
    return regions


_LIVE_STATES = ["pending", "running", "stopping", "stopped"]
"""EC2 states of an instance that still exists (not shutting down or terminated)."""


def _describe(ec2: Any, name: str, values: list[str],
              states: list[str] | None = _LIVE_STATES) -> list[dict[str, Any]]:
    """Instances matching a filter (a filter, unlike ``InstanceIds``, does not fail the whole
    call when one id is gone), in one of ``states`` (``None``: any)."""
    instances: list[dict[str, Any]] = []
    unique = sorted(set(values))
    for start in range(0, len(unique), _FILTER_VALUES):
        filters = [{"Name": name, "Values": unique[start:start + _FILTER_VALUES]}]
        if states is not None:
            filters.append({"Name": "instance-state-name", "Values": states})
        with aws_errors("ec2"):
            pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
            instances.extend(i for page in pages for r in page["Reservations"]
                             for i in r["Instances"])
    return instances


def _running(instance: dict[str, Any]) -> bool:
    return bool(instance.get("State", {}).get("Name") == "running")


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def _volumes(instance: dict[str, Any], spec: AwsShadowSpec) -> tuple[str, ...]:
    """The data volume at the spec's device; every EBS volume but the root one otherwise."""
    mappings = [m for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m]
    data = [m["Ebs"]["VolumeId"] for m in mappings if m["DeviceName"] == spec.data_device_name]
    if data:
        return tuple(data)
    root = instance.get("RootDeviceName")
    return tuple(m["Ebs"]["VolumeId"] for m in mappings if m["DeviceName"] != root)
