"""Failover of a silent primary: the rule, the probe against real servers, the checks'
independence, and the decisions on AWS observations. The whole path (watcher, protection,
emergency cutover) runs in ``tests/workflows/test_fleet_watcher.py`` (local) and
``tests/workflows/test_cutover_aws.py`` (AWS)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

import pytest
from temporalio.client import Client

from activities import failover_monitor
from activities.failover_monitor import FailoverMonitor, answers, failover_due, is_standby
from activities.local_checks import check_each
from activities.watch_aws import AwsTarget, aws_spec_of
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint
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

    async def execute_update(self, name: str, request: Any) -> str:
        if self.stuck:
            await asyncio.sleep(3600)
        assert name == "request_cutover"
        self.requests.append((self.workflow_id, request))
        return "scheduled"


AFTER_S = 0.2
"""A short ``failover_after_s`` (the spec allows 3 s and up; the rule takes any)."""


async def _past_the_bound() -> None:
    await asyncio.sleep(AFTER_S + 0.05)


def _located(*, running: bool, standby_running: bool = True) -> AwsTarget:
    spec = aws_spec_of({"instance_id": "orders-db", "tier": 2, "aws": {
        "ec2_instance_id": "i-0aaaaaaaaaaaaaaaa", "region": "eu-west-1",
        "shadow_subnet_id": "subnet-0bbbbbbbbbbbbbbbb",
        "dns": {"hosted_zone_id": "Z0123", "record_name": "db.example.com"}}})
    return AwsTarget(spec, spec.ec2_instance_id, spec.primary_node, running=running,
                     standby_running=standby_running)


def _monitor(tmp_path: Path, protections: _Protections) -> FailoverMonitor:
    return FailoverMonitor(cast(Client, protections), tmp_path)


async def _observe(monitor: FailoverMonitor, located: AwsTarget, phase: str = "protected",
                   **policy: object) -> None:
    await monitor.observe_aws("protect-orders-db", located,
                              phase, {"failover_after_s": AFTER_S, **policy})


async def test_a_stopped_aws_primary_is_asked_for_once_per_outage(tmp_path: Path) -> None:
    protections = _Protections()
    monitor = _monitor(tmp_path, protections)
    down = _located(running=False)
    await _observe(monitor, down)
    assert protections.requests == [], "not before failover_after_s"
    await _past_the_bound()
    await _observe(monitor, down)
    ((workflow_id, request),) = protections.requests
    assert workflow_id == "protect-orders-db" and request.emergency
    assert "EC2 instance i-0aaaaaaaaaaaaaaaa has not been running for" in request.reason
    await _observe(monitor, down)
    # The cutover runs, fails and leaves the protection protected with the node still down:
    # not asked again (an operator's call now).
    await _observe(monitor, down, phase="cutting_over")
    await _observe(monitor, down)
    await _past_the_bound()
    await _observe(monitor, down)
    assert len(protections.requests) == 1
    # It runs again, then stops: a new outage, with its own grace period.
    await _observe(monitor, _located(running=True))
    await _observe(monitor, down)
    assert len(protections.requests) == 1
    await _past_the_bound()
    await _observe(monitor, down)
    assert len(protections.requests) == 2


async def test_aws_failover_needs_a_running_shadow_and_a_bound(tmp_path: Path) -> None:
    protections = _Protections()
    monitor = _monitor(tmp_path, protections)
    no_shadow = _located(running=False, standby_running=False)
    await _observe(monitor, no_shadow)
    await _past_the_bound()
    await _observe(monitor, no_shadow)
    assert protections.requests == [], "nothing to fail over to"
    await _observe(monitor, _located(running=False))
    assert len(protections.requests) == 1, "asked once the shadow runs"

    off = _monitor(tmp_path, protections := _Protections())
    await _observe(off, no_shadow, failover_after_s=0)
    await _past_the_bound()
    await _observe(off, _located(running=False), failover_after_s=0)
    assert protections.requests == [], "failover_after_s 0 turns it off"


async def test_an_advisory_aws_protection_is_only_logged_until_advisory_is_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    protections = _Protections()
    monitor = _monitor(tmp_path, protections)
    down = _located(running=False)
    await _observe(monitor, down, advisory=True)
    await _past_the_bound()
    await _observe(monitor, down, advisory=True)
    assert protections.requests == []
    assert "advisory protection, so no failover" in caplog.text
    await _observe(monitor, down, advisory=False)
    assert len(protections.requests) == 1


async def test_a_gap_in_aws_observations_starts_the_outage_over(tmp_path: Path) -> None:
    protections = _Protections()
    monitor = _monitor(tmp_path, protections)
    down = _located(running=False)
    await _observe(monitor, down)
    await _past_the_bound()
    monitor.unobserved({"orders-db"})  # AWS could not be asked at this discovery
    await _observe(monitor, down)
    assert protections.requests == [], "down for failover_after_s again after the gap"
    await _past_the_bound()
    await _observe(monitor, down)
    assert len(protections.requests) == 1
    monitor.reset()  # a new watcher run: a handled outage is judged again, grace included
    await _observe(monitor, down)
    await _past_the_bound()
    await _observe(monitor, down)
    assert len(protections.requests) == 2


async def test_a_protection_that_never_takes_the_request_holds_the_watcher_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(failover_monitor, "REQUEST_TIMEOUT_S", 0.3)
    stuck = _Protections(stuck=True)
    monitor = _monitor(tmp_path, stuck)
    down = _located(running=False)
    await _observe(monitor, down)
    await _past_the_bound()
    async with asyncio.timeout(2):  # the request gives up after 0.3 s
        await _observe(monitor, down)
    stuck.stuck = False  # it works again: asked at the next observation, not skipped
    await _observe(monitor, down)
    assert len(stuck.requests) == 1

