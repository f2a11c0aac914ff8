"""Real faults during a cutover: promote breaks (compensate), verify breaks (go forward),
the primary is killed (emergency)."""

from __future__ import annotations

import asyncio
import time

from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from activities.cutover import PlatformCutoverActivities
from contracts.cutover import CutoverInput, CutoverPlan, StepOutcome, StepRequest, VerifyResult
from infra.local.postgres import PgServer
from tests.conftest import LocalService, acked_after
from tests.workflows.test_cutover import protect, run_cutover
from workers.registry import platforms
from workers.settings import Settings
from workers.workload import Writer, missing_acked


async def test_failing_promote_compensates_traffic_back(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """The shadow's server dies (kill -9) just as promotion starts, so every promote attempt
    fails for real; the saga unfences the primary and restores its weight, and writes resume
    there with nothing lost."""
    protected = await protect(local_service, settings, tier=2)
    primary, shadow = protected.nodes
    real = PlatformCutoverActivities(platforms(settings), settings.state_dir)
    shadow_server = PgServer(home=protected.platform.spec.shadow_home,
                             port=protected.request.spec.shadow_port)

    @activity.defn(name="promote_shadow")
    def promote_shadow(request: StepRequest) -> list[StepOutcome]:
        shadow_server.kill()
        return real.promote_shadow(request)

    with Writer(local_service.router, rate=150) as writer, protected.monitor() as monitor:
        await acked_after(writer)
        result = await run_cutover(
            temporal_env.client, settings, task_queue,
            CutoverInput(protected.request, combine_critical_path=False),
            replace=[promote_shadow],
        )
        ended = time.monotonic()
        await acked_after(writer, since=ended)
    assert result.outcome == "compensated", result
    assert "promote" in result.detail and result.primary == primary
    assert protected.platform.get_weights() == {primary: 100, shadow: 0}
    assert protected.platform.probe(primary).writable
    assert not protected.platform.probe(shadow).reachable
    assert any(moment > ended for moment in writer.stats.ack_times), "writes did not resume"
    assert missing_acked(local_service.primary.endpoint, writer.stats.acked_ids) == []
    assert monitor.report.split_brain_observations == 0
    protected.platform.close()


async def test_failing_verify_after_promotion_recovers_forward(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Right after the shift the new primary is put in maintenance at the router (a real
    break, made by a test activity under the real name); verify fails, the saga does not
    un-promote but re-asserts the switch and verifies again."""
    protected = await protect(local_service, settings, tier=1)
    primary, shadow = protected.nodes
    real = PlatformCutoverActivities(platforms(settings), settings.state_dir)
    broken: list[str] = []

    @activity.defn(name="verify_cutover")
    def verify_cutover(plan: CutoverPlan) -> VerifyResult:
        if not broken:
            broken.append(plan.target)
            local_service.haproxy.set_enabled(plan.instance.instance_id, plan.target, False)
        return real.verify_cutover(plan)

    result = await run_cutover(
        temporal_env.client, settings, task_queue, CutoverInput(protected.request),
        replace=[verify_cutover],
    )
    assert broken == [shadow]
    assert result.outcome == "completed" and result.primary == shadow, result
    assert result.forward_recoveries >= 1
    assert protected.platform.get_weights() == {primary: 0, shadow: 100}
    assert not protected.platform.probe(primary).writable
    protected.platform.close()


async def test_emergency_after_kill_9_loses_no_acked_tier1_write(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """kill -9 of the primary under tier-1 load: the emergency cutover fences at the router,
    promotes the shadow and every acknowledged write is on it."""
    protected = await protect(local_service, settings, tier=1)
    primary, shadow = protected.nodes
    with Writer(local_service.router, rate=150) as writer, protected.monitor() as monitor:
        await acked_after(writer)
        killed_at = time.monotonic()
        local_service.primary.kill()
        result = await run_cutover(
            temporal_env.client, settings, task_queue,
            CutoverInput(protected.request, mode="emergency", reason="primary killed"),
        )
        # Wait for the first write after the kill, bounded.
        deadline = time.monotonic() + 10
        while not any(t > killed_at for t in writer.stats.ack_times):
            assert time.monotonic() < deadline, "no write succeeded after the failover"
            await asyncio.sleep(0.1)
    stats = writer.stats
    assert result.outcome == "completed", result.detail
    assert result.primary == shadow and result.possible_loss_bytes == 0
    assert protected.platform.get_weights()[shadow] == 100
    assert protected.platform.get_weights()[primary] == 0
    assert missing_acked(local_service.shadow, stats.acked_ids) == []
    first_after = min(t for t in stats.ack_times if t > killed_at)
    print(f"unplanned failover: {(first_after - killed_at) * 1000:.0f} ms, {result.step_ms}")
    assert first_after - killed_at < 10
    assert monitor.report.split_brain_observations == 0
    assert not PgServer(home=local_service.primary.home, port=local_service.primary.port).running()
    protected.platform.close()
