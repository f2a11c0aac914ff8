"""The fault-injection suite's subset in ``make test``: on fresh namespace hosts under 150
writes/s, a crashed primary host and a frozen one are failed over with nothing lost and no
second writable primary (the frozen one takes no write once thawed), and a primary cut off
from the control worker alone is not failed over. ``make chaos`` runs every scenario."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from bench.chaos_scenarios import SCENARIOS, run_scenario
from tests.infra.hosts.conftest import machine_can_host  # noqa: F401 (fixture, used by name)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("machine_can_host")]


@pytest.mark.parametrize("name", ["primary_host_crash", "primary_host_frozen_20s",
                                  "primary_partitioned_from_control"])
async def test_scenario_converges_without_loss(name: str,
                                               temporal_env: WorkflowEnvironment) -> None:
    result = await run_scenario(temporal_env.client, name, SCENARIOS[name])
    print(f"\n{name}: {result.to_json()}")
    assert result.outcome == "converged", result.to_json()
    assert result.lost_acked_writes == 0 and result.split_brain_observations == 0
    assert result.fenced_writes == 0
    if name == "primary_partitioned_from_control":
        assert result.failovers == 0
    else:
        assert result.failovers == 1 and result.first_write_after_fault_s is not None
