"""How the fleet watcher reads AWS protections: EC2 for who serves, CloudWatch for metrics,
EC2 status for scheduled events.

Cost (why the cadences differ from the local platform's):

- CloudWatch publishes EC2 metrics every minute (detailed monitoring) or every 5 minutes
  (basic), and ``GetMetricData`` is billed per metric requested ($0.01 per 1,000). Reading
  every 15 s would pay four times for the same datapoint, so AWS protections are read once per
  ``metrics_period_s`` (60 s): 5 metrics plus 4 per data volume, about 540 metrics, ~$0.005,
  per instance-hour with one volume. The fleet's queries share calls (500 queries per call).
- A reading is a new sample only when CloudWatch has a datapoint newer than the last one kept;
  repeating a datapoint would count one minute twice in the model's window and in the
  policy's "N readings in a row" hysteresis.
- ``DescribeInstanceStatus`` (free, rate-limited) is polled when the watcher asks for events
  (every 5 minutes): AWS schedules maintenance days ahead.
- Which instance serves (the spec's ``ec2_instance_id``, or the shadow found by its
  ``shadowshift:node`` tag once a cutover labelled it ``shadowshift:role=primary``) and its
  data volumes are looked up at discovery (every 30 s) with two ``DescribeInstances`` calls
  per region for the whole fleet. The same answer carries each instance's state, which is the
  liveness the failover rule reads: anything but ``running`` is down, once per discovery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.shadow import PlatformRequest
from infra.aws.clients import AwsClients
from infra.aws.discovery import NODE_TAG, ROLE_TAG
from infra.aws.errors import aws_errors
from infra.aws.events import InstanceEvent, instance_events
from infra.aws.metrics import CloudWatchMetricsCollector, read_many
from infra.aws.spec import AwsShadowSpec
from infra.errors import InfraError
from infra.platform import (
    ALIVE,
    DOWN,
    UNSEEN,
    FleetObserver,
    Liveness,
    Located,
    NodeReading,
    ScheduledEvent,
)

SEVERITY_BY_RISK = {"high": 1.0, "medium": 0.5}
"""``report_event`` severity of an :class:`InstanceEvent` risk."""
_FILTER_VALUES = 200
"""DescribeInstances accepts at most 200 values per filter."""


@dataclass(frozen=True)
class AwsTarget:
    """What the watcher reads for one AWS protection: the serving instance and its volumes."""

    spec: AwsShadowSpec
    """The protection's AWS view."""
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


class AwsObserver(FleetObserver):
    """AWS protections, batched per region; blocking boto3 (run it in threads)."""

    name = "aws"

    def __init__(self, clients: Callable[[str], AwsClients],
                 metrics_period_s: int = 60) -> None:
        self._clients = clients
        self._period_s = metrics_period_s
        self._targets: dict[str, AwsTarget] = {}
        self._fresh: dict[str, Liveness] = {}
        self._last_datapoint: dict[str, float] = {}
        self._next_read = 0.0

    @property
    def targets(self) -> dict[str, AwsTarget]:
        """What the last :meth:`locate` found, by instance id."""
        return dict(self._targets)

    def locate(self, instances: Mapping[str, PlatformRequest]) -> dict[str, Located]:
        """The serving instance of each protection, from two ``DescribeInstances`` calls per
        region. A failed call makes every protection of the region ``unseen`` once."""
        specs = {iid: AwsShadowSpec.from_spec(request.spec) for iid, request in instances.items()}
        try:
            targets = self._locate(specs)
        except InfraError:
            self._fresh = {iid: Liveness(UNSEEN, "") for iid in specs}
            raise
        self._targets = targets
        self._fresh = {iid: Liveness(ALIVE if t.running else DOWN, t.ec2_instance_id,
                                     f"EC2 instance {t.ec2_instance_id} has not been running",
                                     down=() if t.running else ("ec2",),
                                     up=("ec2",) if t.running else ())
                       for iid, t in targets.items()}
        for iid in set(specs) - set(targets):
            self._fresh[iid] = Liveness(UNSEEN, "")
        return {iid: Located(iid, t.node, t.ec2_instance_id) for iid, t in targets.items()}

    def sample(self, instances: Mapping[str, PlatformRequest], located: Mapping[str, Located],
               now: float) -> dict[str, NodeReading]:
        """The latest CloudWatch datapoint of each located instance, once per period, and only
        when it is newer than the last one returned."""
        if now < self._next_read:
            return {}
        self._next_read = now + self._period_s
        targets = {iid: self._targets[iid] for iid in located if iid in self._targets}
        readings: dict[str, NodeReading] = {}
        by_region: dict[str, list[AwsTarget]] = {}
        for target in targets.values():
            by_region.setdefault(target.spec.region, []).append(target)
        for region, members in by_region.items():
            cloudwatch = self._clients(region).cloudwatch
            collectors = [
                CloudWatchMetricsCollector(
                    cloudwatch, t.spec.instance_id, t.ec2_instance_id, volume_ids=t.volume_ids,
                    period_s=self._period_s, id_prefix=f"q{index}_")
                for index, t in enumerate(members)
            ]
            results = read_many(cloudwatch, collectors, datetime.fromtimestamp(now, UTC))
            for target, reading in zip(members, results, strict=True):
                iid = target.spec.instance_id
                if not reading.raw:  # no datapoint at all
                    continue
                if reading.sample.timestamp <= self._last_datapoint.get(iid, -1.0):
                    continue  # the same datapoint again: not a new reading
                self._last_datapoint[iid] = reading.sample.timestamp
                readings[iid] = NodeReading(located[iid], reading.sample)
        return readings

    def scheduled_events(self, located: Mapping[str, Located]) -> dict[str, list[ScheduledEvent]]:
        """Pending scheduled events and impaired checks of each serving instance."""
        owners: dict[str, dict[str, str]] = {}
        for iid in located:
            target = self._targets.get(iid)
            if target is not None:
                owners.setdefault(target.spec.region, {})[target.ec2_instance_id] = iid
        found: dict[str, list[ScheduledEvent]] = {iid: [] for iid in located}
        for region, by_ec2 in owners.items():
            ids = list(by_ec2)
            for start in range(0, len(ids), 100):  # DescribeInstanceStatus: 100 ids per call
                for event in instance_events(self._clients(region).ec2, ids[start:start + 100]):
                    found[by_ec2[event.ec2_instance_id]].append(_scheduled(event))
        return found

    def liveness(self, instance: PlatformRequest, located: Located) -> Liveness | None:
        """The last discovery's EC2 state of the serving instance, once."""
        return self._fresh.pop(instance.instance_id, None)

    def standby_ready(self, instance: PlatformRequest, located: Located) -> bool:
        """The other node's instance was running at the last discovery."""
        target = self._targets.get(instance.instance_id)
        return target is not None and target.standby_running

    def _locate(self, specs: Mapping[str, AwsShadowSpec]) -> dict[str, AwsTarget]:
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
                target = _serving(spec, by_id, by_node)
                if target is not None:
                    targets[spec.instance_id] = target
        return targets


def _serving(spec: AwsShadowSpec, by_id: dict[str, dict[str, Any]],
             by_node: dict[str | None, dict[str, Any]]) -> AwsTarget | None:
    """Cutovers move the role tag; before the first one only the primary exists. A primary
    that was already stopped when it was failed over keeps its tag (the cutover stops and
    retags only a running node): the running one serves."""
    nodes = [(spec.primary_node, by_id.get(spec.ec2_instance_id)),
             (spec.shadow_node, by_node.get(spec.shadow_node))]
    found = [(node, i) for node, i in nodes if i is not None]
    serving = min(
        (pair for pair in found if _tags(pair[1]).get(ROLE_TAG) == "primary"),
        key=lambda pair: not _running(pair[1]),
        default=found[0] if found and found[0][0] == spec.primary_node else None)
    if serving is None:
        return None
    node, instance = serving
    others = [i for n, i in found if n != node]
    return AwsTarget(spec, instance["InstanceId"], node, _volumes(instance, spec),
                     running=_running(instance),
                     standby_running=bool(others) and _running(others[0]))


def _scheduled(event: InstanceEvent) -> ScheduledEvent:
    """An EC2 event as the watcher signals it; keyed by instance and AWS's event id (or the
    check's code), so each is sent once."""
    return ScheduledEvent(f"{event.ec2_instance_id}/{event.event_id or event.code}", event.kind,
                          event.detail, SEVERITY_BY_RISK.get(event.risk, 0.5))


def _by_region(specs: Mapping[str, AwsShadowSpec]) -> dict[str, list[AwsShadowSpec]]:
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

