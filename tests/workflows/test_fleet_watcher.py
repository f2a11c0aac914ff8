"""The fleet watcher scores real live metrics and signals a protection only on change."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psutil
import psycopg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.watching.items import worth_reporting
from contracts.policy import FleetBudget, Policy, PolicyChange
from contracts.protection import CutoverRequest, ProtectionApi
from contracts.watch import WatchFleetInput, WatchFleetResult
from infra.local.postgres import PgServer, query_one
from tests.conftest import LocalService, acked_after, with_spec
from workers.protect import ensure_fleet_watcher, start_protection
from workers.registry import new_worker
from workers.settings import Settings
from workers.workload import Writer, missing_acked, prepare_table
from workflows.protection import InstanceProtectionWorkflow


async def _first_run(watcher: WorkflowHandle[Any, Any], timeout_s: float) -> WatchFleetResult:
    """The result of the watcher's first bounded activity run (its sample count)."""
    async with asyncio.timeout(timeout_s):
        while True:
            async for event in watcher.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                    payloads = event.activity_task_completed_event_attributes.result.payloads
                    (result,) = await watcher._client.data_converter.decode(
                        payloads, [WatchFleetResult])
                    return result  # type: ignore[no-any-return]
            await asyncio.sleep(0.5)


async def test_watcher_reports_risk_on_change_only(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """With one-second sampling the protection receives the model's score, and far fewer
    signals than samples: the watcher only signals when the score's band or decision moves."""
    client = temporal_env.client
    spec = local_service.spec
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=15,
                            budget=FleetBudget(advisory=True))
    prepare_table(local_service.router)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await start_protection(client, spec, task_queue=task_queue)
            again = await start_protection(client, spec, task_queue=task_queue)
            assert again.result_run_id == handle.result_run_id  # joined, not a second one
            await _wait_for_status(handle, lambda s: s.phase == "protected", 180)
            watcher = await ensure_fleet_watcher(client, task_queue=task_queue, request=watch)
            with Writer(local_service.router, rate=50):
                run = await _first_run(watcher, 60)
            status = await handle.query(InstanceProtectionWorkflow.status)
            signals = [
                event async for event in handle.fetch_history_events()
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            ]
            await watcher.terminate("test over")
            await handle.terminate("test over")
    assert status.failure_probability is not None and status.readiness_score is not None
    assert 0.0 <= status.failure_probability <= 1.0
    assert 0.0 <= status.readiness_score <= 100.0
    assert run.samples >= 10, run
    assert 1 <= len(signals) <= run.samples // 3, (len(signals), run.samples)


async def _risk_decisions(handle: WorkflowHandle[Any, Any]) -> list[str]:
    decisions = []
    async for event in handle.fetch_history_events():
        attributes = event.workflow_execution_signaled_event_attributes
        if (event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                and attributes.signal_name == ProtectionApi.report_risk.__name__):
            decisions.append(json.loads(attributes.input.payloads[0].data)["decision"])
    return decisions


async def test_watcher_decides_with_each_instance_policy(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, caplog: pytest.LogCaptureFixture,
) -> None:
    """The watcher decides with the protection's own policy, and set_policy reaches it: a
    threshold of 100 holds; lowered to 0 with one reading, the next signal says migrate, and
    the paused protection refuses the watcher's request, which then stays quiet."""
    client = temporal_env.client
    spec = with_spec(local_service.request,
                     policy=Policy(threshold=100, consecutive_readings=1)).spec
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=90)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await start_protection(client, spec, task_queue=task_queue)
            await handle.signal(InstanceProtectionWorkflow.pause)  # decide, never act
            watcher = await ensure_fleet_watcher(client, task_queue=task_queue, request=watch)
            async with asyncio.timeout(60):
                while not await _risk_decisions(handle):
                    await asyncio.sleep(0.5)
            assert set(await _risk_decisions(handle)) == {"hold"}
            await handle.execute_update(InstanceProtectionWorkflow.set_policy,
                                        PolicyChange(threshold=0, consecutive_readings=1))
            async with asyncio.timeout(30):
                while "migrate" not in await _risk_decisions(handle):
                    await asyncio.sleep(0.5)
            async with asyncio.timeout(30):
                while "migration refused by the protection" not in caplog.text:
                    await asyncio.sleep(0.2)
            await watcher.terminate("test over")
            await handle.terminate("test over")
    assert "protection is paused" in caplog.text and "not asking again for 300 s" in caplog.text


async def _wait_for_status(handle: WorkflowHandle[Any, Any], done: Any, timeout_s: float) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            status = await handle.query(InstanceProtectionWorkflow.status)
            if done(status):
                return status
            await asyncio.sleep(0.25)


@asynccontextmanager
async def _protected_tier1(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, policy: Policy, watch: WatchFleetInput,
) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """A worker, a tier-1 protection of ``local_service`` in phase ``protected`` and the
    fleet watcher: yields the protection's handle; both end when the body succeeds."""
    client = temporal_env.client
    spec = with_spec(local_service.request, tier=1, policy=policy).spec
    prepare_table(local_service.router)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await start_protection(client, spec, task_queue=task_queue)
            await _wait_for_status(handle, lambda s: s.phase == "protected", 180)
            watcher = await ensure_fleet_watcher(client, task_queue=task_queue, request=watch)
            # The watcher has found and sampled the protection once it heard a score.
            await _wait_for_status(handle, lambda s: s.readiness_score is not None, 60)
            yield handle
            await watcher.terminate("test over")
            await handle.terminate("test over")


async def test_watcher_relaxes_tier1_sync_for_a_lost_shadow_and_restores_it(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Tier 1's non-strict mode runs in the product: with the shadow stopped, commits stall
    only until the watcher relaxes synchronous replication (the spec's 10 s), the protection
    hears it; with the shadow back, the watcher requires it again."""
    request = local_service.request
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=300,
                            budget=FleetBudget(advisory=True))
    primary = local_service.primary.endpoint
    shadow = PgServer(home=settings.state_dir / "instances" / request.instance_id / "shadow",
                      port=request.spec.shadow_port)
    async with _protected_tier1(temporal_env, settings, task_queue, local_service,
                                Policy(advisory=True), watch) as handle:
        assert query_one(primary, "SHOW synchronous_standby_names")
        with Writer(local_service.router, rate=50) as writer:
            await asyncio.to_thread(shadow.stop, mode="immediate")
            stopped_at = time.monotonic()
            status = await _wait_for_status(handle, lambda s: s.sync_degraded, 60)
            degraded_at = time.monotonic()
            await acked_after(writer, since=degraded_at)
        assert query_one(primary, "SHOW synchronous_standby_names") == ""
        assert any("Synchronous replication relaxed" in line for line in status.log)
        # The shadow may lack acknowledged writes now: no emergency cutover without force.
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                        CutoverRequest("primary died", emergency=True))
        assert "relaxed" in str(refused.value.cause)
        stalled = [t for t in writer.stats.ack_times if stopped_at + 1 < t < stopped_at + 9]
        assert not stalled, "commits wait for the lost synchronous shadow until relaxed"
        assert any(t > degraded_at for t in writer.stats.ack_times), "then they go on"
        assert degraded_at - stopped_at >= 9.0  # the clock may start as the stream dies

        await asyncio.to_thread(shadow.start)
        await _wait_for_status(handle, lambda s: not s.sync_degraded, 60)
        assert query_one(primary, "SHOW synchronous_standby_names")
        assert query_one(primary, "SELECT sync_state FROM pg_stat_replication") == "sync"


async def test_watcher_fails_over_a_primary_that_stops_answering(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, caplog: pytest.LogCaptureFixture,
) -> None:
    """A kill -9 the model could not see: while the protection is advisory the watcher only
    logs the silent primary; once advisory is off it asks for an emergency cutover, which
    moves traffic to the shadow with no acknowledged tier-1 write lost."""
    instance_id = local_service.request.instance_id
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=300)
    shadow_node = f"{instance_id}-shadow"
    async with _protected_tier1(temporal_env, settings, task_queue, local_service,
                                Policy(advisory=True, failover_after_s=3),
                                watch) as handle:
        with Writer(local_service.router, rate=50) as writer:
            await asyncio.to_thread(local_service.primary.kill)
            async with asyncio.timeout(30):  # the watcher judged the outage: it only logged
                while "advisory protection, so no failover" not in caplog.text:
                    await asyncio.sleep(0.2)
            status = await handle.query(InstanceProtectionWorkflow.status)
            assert status.cutovers == 0 and status.phase == "protected", "advisory: no act"
            # Scores never act here (threshold 100, 100 readings): only the probe can.
            await handle.execute_update(
                InstanceProtectionWorkflow.set_policy,
                PolicyChange(advisory=False, threshold=100, consecutive_readings=100))
            changed_at = time.monotonic()
            status = await _wait_for_status(handle, lambda s: s.cutovers == 1, 60)
            async with asyncio.timeout(20):
                while not any(t > changed_at for t in writer.stats.ack_times):
                    await asyncio.sleep(0.1)  # writes go on through the router
        assert status.primary_node == shadow_node
        assert any("automatic failover" in line for line in status.log), status.log
        assert status.last_cutover is not None
        assert status.last_cutover.trigger == "failure-detection"
        assert missing_acked(local_service.shadow, writer.stats.acked_ids) == []
        weights = local_service.haproxy.weights(instance_id)
        assert weights[shadow_node] == 100 and weights[instance_id] == 0


def _freeze(server: PgServer) -> list[psutil.Process]:
    """SIGSTOP the server's postmaster and every process it started (a hung host or a long
    GC-like pause: the kernel still accepts connections, nothing answers)."""
    postmaster = psutil.Process(server.pid())
    family = [postmaster, *postmaster.children(recursive=True)]
    for process in family:
        process.suspend()
    return family


async def test_watcher_fails_over_a_hung_primary_that_then_takes_no_write(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Every process of the tier-1 primary frozen under writes: the watcher asks for the
    emergency cutover, which kills the hung server (it cannot be asked to stop) and moves
    traffic to the shadow. No acknowledged write is lost, and when the freeze ends the former
    primary takes no write, neither through the router nor on its own port."""
    instance_id = local_service.request.instance_id
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=300)
    policy = Policy(failover_after_s=3, threshold=100, consecutive_readings=100)
    async with _protected_tier1(temporal_env, settings, task_queue, local_service, policy,
                                watch) as handle:
        with Writer(local_service.router, rate=50) as writer:
            await acked_after(writer)
            frozen = await asyncio.to_thread(_freeze, local_service.primary)
            frozen_at = time.monotonic()
            status = await _wait_for_status(handle, lambda s: s.cutovers == 1, 90)
            await acked_after(writer, since=frozen_at, count=1, timeout_s=30)
            first_write_s = min(t for t in writer.stats.ack_times if t > frozen_at) - frozen_at
            for process in frozen:  # the freeze ends (a no-op for the killed ones)
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.resume()
            await acked_after(writer, since=time.monotonic())
        print(f"hung primary: first write on the shadow {first_write_s:.1f} s after the freeze")
        assert status.last_cutover is not None
        assert status.last_cutover.trigger == "failure-detection", status.last_cutover
        assert status.primary_node == f"{instance_id}-shadow"
        assert missing_acked(local_service.shadow, writer.stats.acked_ids) == []
        direct = local_service.primary.endpoint.conninfo(connect_timeout=2)
        with pytest.raises(psycopg.OperationalError), \
                psycopg.connect(direct, autocommit=True) as conn:
            conn.execute("INSERT INTO shadowshift_workload (id) VALUES (-1)")
        assert local_service.haproxy.weights(instance_id)[instance_id] == 0


async def test_an_advisory_fleet_watcher_only_logs_a_silent_primary(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, caplog: pytest.LogCaptureFixture,
) -> None:
    """The watcher's fleet policy is advisory: a protection that is not advisory itself is
    still only logged when its primary stops answering, as its score decisions would be."""
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=300,
                            budget=FleetBudget(advisory=True))
    policy = Policy(failover_after_s=3, threshold=100, consecutive_readings=100)
    async with _protected_tier1(temporal_env, settings, task_queue, local_service, policy,
                                watch) as handle:
        await asyncio.to_thread(local_service.primary.kill)
        async with asyncio.timeout(30):
            while "advisory protection, so no failover" not in caplog.text:
                await asyncio.sleep(0.5)
        status = await handle.query(InstanceProtectionWorkflow.status)
        assert status.cutovers == 0 and status.phase == "protected", status.log


async def test_a_predicted_cutover_frees_its_budget_slot_and_the_cooldown_quiets_the_watcher(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, caplog: pytest.LogCaptureFixture,
) -> None:
    """The watcher's policy migrates (threshold 0): the protection takes the request and cuts
    over (trigger prediction), the watcher frees the fleet-budget slot once the cutover
    workflow ended, and its next request is refused by the protection's cooldown, measured
    on the protection's clock, which the watcher honours for the time the refusal states."""
    caplog.set_level(logging.INFO)
    policy = Policy(threshold=0, consecutive_readings=1, cooldown_s=3600, failover_after_s=0)
    watch = WatchFleetInput(sample_interval_s=1.0, discovery_interval_s=1.0, max_duration_s=300,
                            budget=FleetBudget(max_concurrent=1))
    async with _protected_tier1(temporal_env, settings, task_queue, local_service, policy,
                                watch) as handle:
        status = await _wait_for_status(handle, lambda s: s.cutovers == 1 and
                                        s.phase == "protected", 180)
        async with asyncio.timeout(60):
            while "its budget slot is free" not in caplog.text or \
                    "in cooldown after the last cutover" not in caplog.text:
                await asyncio.sleep(0.2)
        again = await handle.query(InstanceProtectionWorkflow.status)
    assert status.last_cutover is not None and status.last_cutover.trigger == "prediction"
    assert again.cutovers == 1
    quiet = [line for line in caplog.text.splitlines() if "not asking again for" in line]
    seconds = float(quiet[0].split("not asking again for ")[1].split(" s")[0])
    assert 3000 < seconds <= 3600, quiet


def test_reporting_rule() -> None:
    """A score hovering at a band edge is not news; a decision, a threshold crossing, a
    10-point move or a score appearing or vanishing is."""
    nan = float("nan")
    assert worth_reporting(None, "hold", 60, 9.5, "hold")
    assert not worth_reporting(9.5, "hold", 60, 10.5, "hold")  # band edge: silent
    assert not worth_reporting(10.0, "hold", 60, 19.9, "hold")
    assert worth_reporting(10.0, "hold", 60, 20.0, "hold")
    assert worth_reporting(58.0, "hold", 60, 61.0, "hold")  # crosses the threshold
    assert worth_reporting(61.0, "hold", 60, 59.0, "hold")
    assert worth_reporting(61.0, "hold", 60, 61.0, "migrate")
    assert worth_reporting(nan, "hold", 60, 5.0, "hold") and worth_reporting(5.0, "hold", 60, nan,
                                                                               "hold")
    assert not worth_reporting(nan, "hold", 60, nan, "hold")
