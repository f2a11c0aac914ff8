"""The bench-scale worker process: the production worker, with the ``scale-double`` platform.

Every workflow and activity the production registry builds is registered under its own name
(``workers.registry.build_activities``), with the same worker options as
``workers.registry.new_worker``. Only the activities that touch a platform or read metrics are
swapped for subclasses that route to the double:

- shadow, cutover and recovery activities: the protection workflow's ``ShadowRequest`` does not
  carry the spec's ``platform`` field (it always says ``local``), so the subclasses re-address
  the request to ``scale-double`` before ``infra.factory.platform_for`` dispatches it;
- the fleet watcher: the same sampling, batch scoring, policy and signalling code, discovering
  ``scale-double`` protections and sampling :class:`~bench.scale_double.DoubleCollector`
  instead of PostgreSQL and HAProxy. The feedback-loop recorder is off (it reads the
  instance's PostgreSQL).

Run: ``python -m bench.scale_worker --address HOST:PORT --task-queue Q --state-dir DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.cutover import CutoverActivities
from activities.recovery import InspectRequest, NodeFacts, RecoveryActivities
from activities.scoring import ScoringActivities
from activities.shadow import ShadowActivities, ShadowRequest
from activities.watch import (
    PROTECTION_QUERY,
    WatchActivities,
    WatchFleetInput,
    _Watched,
    instance_policy,
)
from bench import scale_double
from infra.factory import platform_for
from infra.platform import Platform
from infra.pulumi_engine import StackDriver
from workers import registry
from workers.settings import Settings


def _double(request: ShadowRequest) -> ShadowRequest:
    return dataclasses.replace(request, platform=scale_double.PLATFORM)


class DoubleShadowActivities(ShadowActivities):
    """Shadow activities on the double."""

    def platform(self, request: ShadowRequest) -> Platform:
        """The double, through the factory."""
        return platform_for(_double(request), self._driver, self._state_dir)


class DoubleCutoverActivities(CutoverActivities):
    """Cutover activities on the double."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(cast(StackDriver, None), state_dir)
        self._shadow = DoubleShadowActivities(cast(StackDriver, None), state_dir)


class DoubleRecoveryActivities(RecoveryActivities):
    """Recovery activities on the double."""

    def platform(self, request: ShadowRequest) -> Platform:
        """The double, through the factory."""
        return platform_for(_double(request), self._driver, self._state_dir)

    @activity.defn(name="inspect_node")
    def inspect_double_node(self, request: InspectRequest) -> NodeFacts:
        """A reachable, rewindable node (the production activity reads PostgreSQL settings,
        which a double has none of; answering ``Unsupported`` would log a traceback per
        protection start, a cost production does not have)."""
        return NodeFacts(request.node, True, "", True)


class DoubleWatchActivities(WatchActivities):
    """The fleet watcher over ``scale-double`` protections."""

    def __init__(self, client: Client, scoring: ScoringActivities, state_dir: Path) -> None:
        super().__init__(client, scoring, state_dir, outcomes=None)
        self._stream = scale_double.MetricStream(state_dir)

    async def _discover(self, watched: dict[str, _Watched], request: WatchFleetInput) -> None:
        """As the base class (this queue's protections, spec from the memo), keeping the
        double's protections instead of the local platform's."""
        seen: set[str] = set()
        query = f"{PROTECTION_QUERY} AND TaskQueue = '{activity.info().task_queue}'"
        async for execution in self._client.list_workflows(query):
            memo = await execution.memo()
            spec: dict[str, Any] = memo.get("spec") or {}
            instance_id = spec.get("instance_id")
            if not instance_id or spec.get("platform") != scale_double.PLATFORM:
                continue
            profile, policy = instance_policy(spec.get("policy") or {}, request)
            seen.add(instance_id)
            item = watched.get(instance_id)
            if item is None:
                collector = scale_double.DoubleCollector(instance_id, self._stream)
                watched[instance_id] = _Watched(
                    execution.id, cast(Any, None), 0, cast(Any, collector),
                    deque(maxlen=request.window_samples), profile, policy,
                )
            else:
                item.profile, item.policy = profile, policy
        for gone in set(watched) - seen:
            del watched[gone]

    async def _follow_primary(self, item: _Watched) -> _Watched:
        """The double has no router to follow."""
        return item


def build_activities(settings: Settings, client: Client) -> list[Callable[..., Any]]:
    """The production activity list with the platform and watcher activities swapped."""
    production = registry.build_activities(settings, client)
    # The watcher shares the production list's scoring object (one model in memory).
    scoring = next(getattr(fn, "__self__", None) for fn in production
                   if _name(fn) == "score_instances")
    assert isinstance(scoring, ScoringActivities)
    driver = cast(StackDriver, None)
    shadow = DoubleShadowActivities(driver, settings.state_dir)
    recovery = DoubleRecoveryActivities(driver, settings.state_dir)
    swapped: list[Callable[..., Any]] = [
        shadow.provision_shadow, shadow.wait_for_sync, shadow.replication_status,
        shadow.supervise_sync, shadow.destroy_shadow,
        DoubleWatchActivities(client, scoring, settings.state_dir).watch_fleet,
        *registry.cutover_activities(DoubleCutoverActivities(settings.state_dir)),
        *registry.recovery_activities(recovery), recovery.inspect_double_node,
    ]
    by_name = {_name(fn): fn for fn in production}
    by_name.update({_name(fn): fn for fn in swapped})
    return list(by_name.values())


def _name(fn: Any) -> str:
    definition = activity._Definition.from_callable(fn)
    assert definition is not None and definition.name is not None
    return definition.name


async def run(address: str, task_queue: str, state_dir: Path) -> None:
    """Serve ``task_queue`` until cancelled."""
    scale_double.register()
    passphrase = state_dir / "pulumi-passphrase"
    passphrase.write_text("bench-scale-unused\n")  # the registry builds a driver it never uses
    settings = Settings(temporal_address=address, task_queue=task_queue, state_dir=state_dir,
                        pulumi_passphrase_file=passphrase, log_level="WARNING")
    client = await Client.connect(address)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=list(registry.WORKFLOWS),
            activities=build_activities(settings, client),
            activity_executor=executor,
            max_concurrent_activities=settings.max_concurrent_activities,
            max_heartbeat_throttle_interval=timedelta(seconds=100),
        )
        await worker.run()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args.address, args.task_queue, args.state_dir))


if __name__ == "__main__":
    main()
