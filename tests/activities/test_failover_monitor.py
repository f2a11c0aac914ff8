"""Failover of a silent primary: the rule, the local probe against real servers, the checks'
independence, and the monitor's decisions on a platform's observations. The whole path
(watcher, protection, emergency cutover) runs in ``tests/workflows/test_fleet_watcher.py``
(local) and ``tests/workflows/test_cutover_aws.py`` (AWS)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, cast

import pytest
from temporalio.client import Client

from activities.watching import failover
from activities.watching.checks import check_each
from activities.watching.failover import FailoverMonitor, failover_due
from activities.watching.items import Target
from contracts.policy import Policy
from contracts.protection import FAILURE_DETECTION, ProtectionApi
from contracts.shadow import PlatformRequest
from contracts.spec import ProtectionSpec
from infra.local.observer import answers, is_standby
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint
from infra.platform import (
    ALIVE,
    DOWN,
    SHIFTING,
    UNSEEN,
    FleetObserver,
    Liveness,
    Located,
    NodeReading,
    ScheduledEvent,
)
from tests.conftest import LocalService


def test_a_silent_node_is_due_only_after_its_bound() -> None:
    assert failover_due(True, 100.0, 200.0, 10) == (False, None)  # it answers: forgotten
    assert failover_due(False, None, 100.0, 10) == (False, 100.0)  # silence starts now
    assert failover_due(False, 100.0, 109.9, 10) == (False, 100.0)
    assert failover_due(False, 100.0, 110.0, 10) == (True, 100.0)
    assert failover_due(False, 100.0, 1e9, 0) == (False, 100.0)  # 0: automatic failover off


def test_the_probe_sees_a_running_server_up_and_a_dead_one_down(
    local_service: LocalService,
) -> None:
    primary = local_service.primary.endpoint
    assert answers(primary)
    assert answers(PgEndpoint(port=primary.port, user="no_such_role"))  # refused, but up
    assert not is_standby(primary)  # a primary is no shadow to promote
    (unused,) = free_ports(1)
    assert not answers(PgEndpoint(port=unused))
    local_service.primary.kill()
    assert not answers(primary)


async def test_a_hanging_check_does_not_delay_another_protections_checks() -> None:
    seen: dict[str, list[float]] = {"hung": [], "fine": []}

    async def check(key: str) -> None:
        seen[key].append(time.monotonic())
        if key == "hung":
            await asyncio.sleep(3600)  # a primary that never answers

    runner = asyncio.create_task(check_each(lambda: {"hung": "hung", "fine": "fine"},
                                            check, 0.05))
    await asyncio.sleep(0.6)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert len(seen["hung"]) == 1, "a check still running is not started again"
    assert len(seen["fine"]) >= 8, seen["fine"]


class _Protections:
    """Stands in for the Temporal client in these unit tests: records each ``request_cutover``
    update, or never answers (a protection whose workflow cannot run). The real update runs in
    the workflow tests named above."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.stuck = stuck

    def get_workflow_handle(self, workflow_id: str) -> _Protections:
        self.workflow_id = workflow_id
        return self

    async def execute_update(self, update: Any, request: Any) -> str:
        if self.stuck:
            await asyncio.sleep(3600)
        assert update is ProtectionApi.request_cutover
        self.requests.append((self.workflow_id, request))
        return "scheduled"


class _Observations(FleetObserver):
    """A platform whose serving node's liveness the test states (once per observation, as a
    platform that learns it at discovery answers); the real observers are tested against
    real servers (``tests/platforms/``)."""

    name = "scripted"

    def __init__(self) -> None:
        self.next: Liveness | None = None
        self.standby = True
        self.asked = 0
        """Liveness observations (on agent hosts, each one renews the primary's lease)."""

    def see(self, state: str) -> None:
        self.next = Liveness(state, "i-0aaaaaaaaaaaaaaaa" if state != UNSEEN else "",
                             "EC2 instance i-0aaaaaaaaaaaaaaaa has not been running")

    def locate(self, instances: Mapping[str, PlatformRequest]) -> dict[str, Located]:
        raise NotImplementedError

    def sample(self, instances: Mapping[str, PlatformRequest], located: Mapping[str, Located],
               now: float) -> dict[str, NodeReading]:
        raise NotImplementedError

    def scheduled_events(self, located: Mapping[str, Located]) -> dict[str, list[ScheduledEvent]]:
        raise NotImplementedError

    def liveness(self, instance: PlatformRequest, located: Located) -> Liveness | None:
        self.asked += 1
        seen, self.next = self.next, None
        return seen

    def standby_ready(self, instance: PlatformRequest, located: Located) -> bool:
        return self.standby


AFTER_S = 0.2
"""A short ``failover_after_s`` (the spec allows 3 s and up; the rule takes any)."""


async def _past_the_bound() -> None:
    await asyncio.sleep(AFTER_S + 0.05)


def _target(phase: str = "protected", **policy: Any) -> Target:
    spec = ProtectionSpec("orders-db", "scripted",
                          policy=Policy(**{"failover_after_s": AFTER_S, **policy}))
    return Target("protect-orders-db", PlatformRequest(spec), phase, 2)


RETRY_S = 0.3
"""A short first wait before asking again (the watcher's is 5 s)."""


class _Rig:
    def __init__(self, protections: _Protections) -> None:
        self.protections = protections
        self.observer = _Observations()
        self.monitor = FailoverMonitor(cast(Client, protections), retry_s=RETRY_S)
        self.monitor.reset({"scripted": self.observer})
        self.located = Located("orders-db", "orders-db", "i-0aaaaaaaaaaaaaaaa")

    async def observe(self, state: str, phase: str = "protected", **policy: Any) -> None:
        self.monitor.track(_target(phase, **policy), self.located, fleet_advisory=False)
        self.observer.see(state)
        await self.monitor.check("orders-db")


async def test_a_dead_primary_is_asked_for_again_with_backoff_while_it_stays_down() -> None:
    rig = _Rig(_Protections())
    await rig.observe(DOWN)
    assert rig.protections.requests == [], "not before failover_after_s"
    await _past_the_bound()
    await rig.observe(DOWN)
    ((workflow_id, request),) = rig.protections.requests
    assert workflow_id == "protect-orders-db" and request.emergency
    assert request.trigger == FAILURE_DETECTION
    assert "EC2 instance i-0aaaaaaaaaaaaaaaa has not been running for" in request.reason
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 1, "not again before the retry wait"
    # The cutover runs, fails (a preflight that timed out on a hung primary) and leaves the
    # protection protected with the node still down: asked again once the wait is over (and
    # the node was down for failover_after_s since the protection came back).
    await rig.observe(DOWN, phase="cutting_over")
    await rig.observe(DOWN)
    await asyncio.sleep(max(RETRY_S, AFTER_S) + 0.05)
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 2
    assert "(asked again)" in rig.protections.requests[1][1].reason
    # The wait doubles: not at RETRY_S, then at twice RETRY_S.
    await asyncio.sleep(RETRY_S + 0.05)
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 2
    await asyncio.sleep(RETRY_S)
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 3
    # It answers again, then stops: a new outage, with its own grace period and waits.
    await rig.observe(ALIVE)
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 3
    await _past_the_bound()
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 4
    assert "(asked again)" not in rig.protections.requests[3][1].reason


async def test_the_serving_node_is_observed_in_every_phase_and_judged_only_when_protected(
) -> None:
    """Provisioning, syncing, recovering, cutting over: each observation reaches the platform
    (on agent hosts it renews the primary's lease, or the primary fences itself), none asks
    for a failover, and an outage is timed from when the protection is protected again."""
    rig = _Rig(_Protections())
    for phase in ("provisioning", "syncing", "recovering", "cutting_over"):
        asked = rig.observer.asked
        await rig.observe(DOWN, phase=phase)
        await _past_the_bound()
        await rig.observe(DOWN, phase=phase)
        assert rig.observer.asked == asked + 2, phase
    assert rig.protections.requests == []
    await rig.observe(DOWN)
    assert rig.protections.requests == [], "down for failover_after_s once protected"
    await _past_the_bound()
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 1


async def test_failover_needs_a_ready_shadow_and_a_bound() -> None:
    rig = _Rig(_Protections())
    rig.observer.standby = False
    await rig.observe(DOWN)
    await _past_the_bound()
    await rig.observe(DOWN)
    assert rig.protections.requests == [], "nothing to fail over to"
    rig.observer.standby = True
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 1, "asked once the shadow is ready"

    off = _Rig(_Protections())
    await off.observe(DOWN, failover_after_s=0)
    await _past_the_bound()
    await off.observe(DOWN, failover_after_s=0)
    assert off.protections.requests == [], "failover_after_s 0 turns it off"


async def test_an_advisory_protection_is_only_logged_until_advisory_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = _Rig(_Protections())
    await rig.observe(DOWN, advisory=True)
    await _past_the_bound()
    await rig.observe(DOWN, advisory=True)
    assert rig.protections.requests == []
    assert "advisory protection, so no failover" in caplog.text
    await rig.observe(DOWN, advisory=False)
    assert len(rig.protections.requests) == 1


async def test_lost_sight_starts_the_outage_over_and_a_shift_is_not_judged() -> None:
    rig = _Rig(_Protections())
    await rig.observe(DOWN)
    await _past_the_bound()
    await rig.observe(UNSEEN)  # the platform could not be asked
    await rig.observe(DOWN)
    assert rig.protections.requests == [], "down for failover_after_s again after the gap"
    await _past_the_bound()
    await rig.observe(SHIFTING)  # mid-shift: nothing to judge, the clock starts over
    await rig.observe(DOWN)
    assert rig.protections.requests == []
    await _past_the_bound()
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 1
    rig.monitor.reset({"scripted": rig.observer})  # a new watcher run: grace included
    await rig.observe(DOWN)
    await _past_the_bound()
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 2


async def test_no_new_observation_changes_nothing() -> None:
    """Between two discoveries a platform that learns liveness at discovery has nothing new:
    the outage neither advances nor starts over."""
    rig = _Rig(_Protections())
    await rig.observe(DOWN)
    await _past_the_bound()
    await rig.monitor.check("orders-db")  # no observation
    assert rig.protections.requests == []
    await rig.observe(DOWN)
    assert len(rig.protections.requests) == 1


async def test_a_protection_that_never_takes_the_request_holds_the_watcher_briefly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(failover, "REQUEST_TIMEOUT_S", 0.3)
    stuck = _Protections(stuck=True)
    rig = _Rig(stuck)
    await rig.observe(DOWN)
    await _past_the_bound()
    async with asyncio.timeout(2):  # the request gives up after 0.3 s
        await rig.observe(DOWN)
    stuck.stuck = False  # it works again: asked at the next observation, not skipped
    await rig.observe(DOWN)
    assert len(stuck.requests) == 1
