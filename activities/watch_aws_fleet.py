"""The fleet watcher's AWS side: locate, sample and report events for AWS protections.

The reads themselves are in :mod:`activities.watch_aws` (blocking boto3, run in threads);
this module keeps the watcher's per-protection state current and sends ``report_event``
signals. Costs and cadences are explained there.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

from temporalio import activity
from temporalio.client import Client

from activities.watch_aws import AwsTarget, AwsWatcher, event_key, event_signal, new_events
from activities.watch_items import Watched
from infra.aws.spec import AwsShadowSpec
from infra.errors import InfraError
from models.policy import PolicyConfig


class AwsFleet:
    """AWS protections of one watcher run; ``events_sent`` travels in its heartbeat."""

    def __init__(self, client: Client, aws: AwsWatcher, events_sent: set[str]) -> None:
        self._client = client
        self._aws = aws
        self.events_sent = events_sent
        """Keys (:func:`event_key`) of the EC2 events already signalled."""
        self.located: dict[str, AwsTarget] = {}
        """What the last :meth:`locate` read from EC2 (nothing if it could not ask)."""

    async def locate(self, watched: dict[str, Watched],
                     specs: dict[str, tuple[str, AwsShadowSpec]],
                     policies: dict[str, tuple[str, PolicyConfig]], window: int) -> set[str]:
        """Find each AWS protection's serving instance (``specs``: instance id -> workflow id
        and spec); an instance that changed (a cutover) starts a fresh window. If AWS cannot
        be asked, the instances known stay watched. Returns the instances watched."""
        self.located = {}
        if not specs:
            return set()
        try:
            targets = await asyncio.to_thread(
                self._aws.locate, {iid: spec for iid, (_, spec) in specs.items()})
        except InfraError as err:
            activity.logger.warning("Cannot locate the AWS instances (%s); retrying.", err)
            return {iid for iid in specs if iid in watched}
        for instance_id, (workflow_id, _) in specs.items():
            target = targets.get(instance_id)
            if target is None:
                activity.logger.warning("Not watching %s: its EC2 instance was not found.",
                                        instance_id)
                continue
            profile, policy = policies[instance_id]
            item = watched.get(instance_id)
            if item is None or item.aws is None or \
                    item.aws.ec2_instance_id != target.ec2_instance_id:
                fresh = Watched(workflow_id, cast(Any, None), 0, cast(Any, None),
                                deque(maxlen=window), profile, policy, aws=target)
                if item is not None:
                    fresh.last_reported, fresh.last_decision = (item.last_reported,
                                                                item.last_decision)
                watched[instance_id] = fresh
            else:
                item.aws, item.profile, item.policy = target, profile, policy
        self.located = targets
        return set(targets)

    async def sample(self, watched: dict[str, Watched], period_s: int) -> list[str]:
        """Append each AWS protection's CloudWatch sample if it is newer than the last one
        kept (CloudWatch has one datapoint per period); returns the instances that got one."""
        targets = {iid: item.aws for iid, item in watched.items() if item.aws is not None}
        if not targets:
            return []
        try:
            samples = await asyncio.to_thread(self._aws.read, targets, period_s)
        except InfraError as err:
            activity.logger.warning("CloudWatch read failed (%s); next period.", err)
            return []
        fresh = []
        for instance_id, sample in samples.items():
            item = watched[instance_id]
            if item.samples and sample.timestamp <= item.samples[-1].timestamp:
                continue  # the same datapoint again: not a new reading
            item.samples.append(sample)
            fresh.append(instance_id)
        return fresh

    async def report_events(self, watched: dict[str, Watched]) -> int:
        """Send each new EC2 scheduled event (or impaired check) once as ``report_event``;
        returns the signals sent."""
        targets = {iid: item.aws for iid, item in watched.items() if item.aws is not None}
        if not targets:
            return 0
        try:
            events = await asyncio.to_thread(self._aws.events, targets)
        except InfraError as err:
            activity.logger.warning("DescribeInstanceStatus failed (%s); next poll.", err)
            return 0
        polled = {target.ec2_instance_id for target in targets.values()}
        sent = 0
        for instance_id, event in new_events(self.events_sent, events, polled):
            activity.logger.info("%s: EC2 event %s (%s).", instance_id, event.kind, event.detail)
            await self._client.get_workflow_handle(watched[instance_id].workflow_id).signal(
                "report_event", event_signal(event))
            self.events_sent.add(event_key(event))
            sent += 1
        return sent
