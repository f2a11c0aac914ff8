"""Failover of a silent primary: the rule, the probe against real servers, and the checks'
independence. The whole path (watcher, protection, emergency cutover) runs in
``tests/workflows/test_fleet_watcher.py``."""

from __future__ import annotations

import asyncio
import time

from activities.failover_monitor import answers, failover_due, is_standby
from activities.local_checks import check_each
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
