"""The fault-injection suite's subset in ``make test``: on fresh namespace hosts under 150
writes/s, a crashed primary host, a frozen one and one whose disk is full are failed over
with nothing lost and no second writable primary (the frozen one takes no write once
thawed), a primary cut off from the control worker alone is not failed over, a shadow whose
host never returns is made anew on the spare host, and without a spare the protection is
degraded until the host returns. ``make chaos`` runs every scenario."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from bench.chaos_scenarios import SCENARIOS, run_scenario
from tests.infra.hosts.conftest import machine_can_host  # noqa: F401 (fixture, used by name)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("machine_can_host")]


@pytest.mark.parametrize("name", ["primary_host_crash", "primary_host_frozen_20s",
                                  "primary_partitioned_from_control", "primary_disk_full",
                                  "shadow_host_lost_for_good",
                                  "shadow_host_lost_without_spare"])
async def test_scenario_converges_without_loss(name: str,
                                               temporal_env: WorkflowEnvironment) -> None:
    result = await run_scenario(temporal_env.client, name, SCENARIOS[name])
    print(f"\n{name}: {result.to_json()}")
    assert result.outcome == "converged", result.to_json()
    assert result.lost_acked_writes == 0 and result.split_brain_observations == 0
    assert result.fenced_writes == 0
    if name == "primary_partitioned_from_control":
        assert result.failovers == 0
    elif name == "shadow_host_lost_without_spare":
        assert result.failovers == 0 and not result.detail, result.to_json()
        assert any("No spare host is left" in line for line in result.log_tail)
        assert any("back in sync. Protected." in line for line in result.log_tail)
    elif name == "shadow_host_lost_for_good":
        assert result.failovers == 0
        moved = [line for line in result.log_tail if "Making it anew on the spare host" in line]
        assert moved and any("is in sync on" in line for line in result.log_tail), \
            result.log_tail
    elif name == "primary_disk_full":
        assert result.failovers == 1
        assert any("data filesystem of" in line and "is full" in line
                   for line in result.log_tail), result.log_tail
    else:
        assert result.failovers == 1 and result.first_write_after_fault_s is not None
