"""The whole protection lifecycle on real PostgreSQL, HAProxy, Pulumi and Temporal.

protect → sync → predicted cutover under writes → the former primary rejoins as the shadow
→ cutover back → it rejoins again; and the other ending of a recovery: a former primary whose
data directory is gone is retired through ``pulumi destroy`` and a fresh shadow is made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.policy import Policy
from contracts.protection import PREDICTION, CutoverRequest, ProtectionStatus
from contracts.shadow import PlatformRequest
from contracts.spec import ProtectionSpec
from infra.local.platform import LocalPlatform
from infra.local.postgres import PgEndpoint, alter_system
from infra.local.program import shadow_program
from tests.conftest import LocalService, acked_after, with_spec
from workers.registry import new_worker, outcomes_store, platforms
from workers.settings import Settings
from workers.workload import Writer, missing_acked, prepare_table
from workflows.protection import InstanceProtectionWorkflow

MIGRATE = CutoverRequest("readiness score 82 crossed the threshold", trigger=PREDICTION)
"""What the fleet watcher sends when its policy decides to migrate."""


def _rewindable(service: LocalService) -> None:
    """pg_rewind needs wal_log_hints (or checksums); it takes a restart."""
    with service.primary.endpoint.connect() as conn:
        alter_system(conn, "wal_log_hints", "on")
    service.primary.stop()
    service.primary.start()


def _spec(service: LocalService) -> ProtectionSpec:
    return with_spec(service.request, tier=1, policy=Policy(threshold=60, cooldown_s=0)).spec


def _platform(settings: Settings, service: LocalService, serving: str) -> LocalPlatform:
    request = PlatformRequest(_spec(service), serving_node=serving,
                              original_home=str(service.primary.home))
    platform = platforms(settings).platform_for(request)
    assert isinstance(platform, LocalPlatform)
    return platform


class PhaseLog:
    """Polls ``status`` and keeps every phase change it sees."""

    def __init__(self, handle: WorkflowHandle) -> None:
        self.handle = handle
        self.phases: list[str] = []
        self.changed_at: list[float] = []
        self.latest: ProtectionStatus | None = None

    async def run(self) -> None:
        while True:
            try:
                status = await self.handle.query(InstanceProtectionWorkflow.status)
            except Exception:  # the worker is starting; ask again
                await asyncio.sleep(0.1)
                continue
            self.latest = status
            if not self.phases or self.phases[-1] != status.phase:
                self.phases.append(status.phase)
                self.changed_at.append(time.monotonic())
            await asyncio.sleep(0.05)

    def seconds_in(self, phase: str) -> list[float]:
        """How long each finished stay in ``phase`` lasted (as polled, ~50 ms resolution)."""
        ends = self.changed_at[1:]
        return [round(end - start, 1) for name, start, end
                in zip(self.phases, self.changed_at, ends, strict=False) if name == phase]

    async def until(self, check: object, timeout_s: float = 180) -> ProtectionStatus:
        """Wait until ``check(status)`` holds."""
        assert callable(check)
        try:
            async with asyncio.timeout(timeout_s):
                while self.latest is None or not check(self.latest):
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"phases {self.phases}, last status {self.latest}") from None
        return self.latest


@asynccontextmanager
async def _protection(
    client: Client, settings: Settings, task_queue: str, spec: ProtectionSpec,
) -> AsyncIterator[tuple[WorkflowHandle, PhaseLog]]:
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, spec, id=spec.workflow_id, task_queue=task_queue,
            )
            phases = PhaseLog(handle)
            poller = asyncio.create_task(phases.run())
            try:
                yield handle, phases
            finally:
                poller.cancel()
                await handle.terminate("test over")


def _stream_state(primary: PgEndpoint, standby: str) -> tuple[str, str, str] | None:
    with primary.connect() as conn:
        row = conn.execute(
            "SELECT state, sync_state, current_setting('synchronous_standby_names')"
            " FROM pg_stat_replication WHERE application_name = %s", (standby,),
        ).fetchone()
    return (str(row[0]), str(row[1]), str(row[2])) if row else None


def _slots(endpoint: PgEndpoint) -> list[str]:
    with endpoint.connect() as conn:
        return [str(row[0]) for row in conn.execute(
            "SELECT slot_name FROM pg_replication_slots ORDER BY 1").fetchall()]


async def test_cutover_rejoin_and_back_under_writes(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """Under ~100 writes/s a predicted cutover moves traffic to the shadow, the former primary
    is rewound into the new shadow (synchronous again), the stack follows the roles, a cutover
    back works and the second recovery rejoins too; not one acknowledged write is lost."""
    _rewindable(local_service)
    spec = _spec(local_service)
    original, shadow = spec.instance_id, f"{spec.instance_id}-shadow"
    async with _protection(temporal_env.client, settings, task_queue, spec) as (handle, log):
        await log.until(lambda s: s.phase == "protected")
        prepare_table(local_service.router)
        with Writer(local_service.router, rate=100) as writer:
            await acked_after(writer)
            await handle.execute_update(InstanceProtectionWorkflow.request_cutover, MIGRATE)
            first = await log.until(lambda s: s.recoveries == ["rejoined"]
                                    and s.phase == "protected", timeout_s=240)
            assert first.cutovers == 1 and first.primary_node == shadow and first.shadow_healthy
            weights = local_service.haproxy.weights(spec.instance_id)
            assert weights == {original: 0, shadow: 100}
            # Tier 1 on the NEW primary: commits wait for the rewound former primary.
            assert _stream_state(local_service.shadow, original) == (
                "streaming", "sync", f'FIRST 1 ("{original}")')

            # The stack records the roles: another `up` converges in place (no re-copy, no
            # revert) and says which node is which.
            swapped = _platform(settings, local_service, shadow)
            result = await asyncio.to_thread(
                swapped.driver.up, swapped.spec.stack_name, shadow_program(swapped.spec))
            swapped.close()
            assert set(result.summary) == {"same"}, result.summary
            assert result.outputs["primary_node"] == shadow
            assert result.outputs["shadow_node"] == original

            await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                        CutoverRequest("move back"))
            second = await log.until(lambda s: s.recoveries == ["rejoined", "rejoined"]
                                     and s.phase == "protected", timeout_s=240)
            await acked_after(writer, since=time.monotonic())
        stats = writer.stats
        assert second.cutovers == 2 and second.primary_node == original
        assert local_service.haproxy.weights(spec.instance_id) == {original: 100, shadow: 0}
        assert _stream_state(local_service.router, shadow) == (
            "streaming", "sync", f'FIRST 1 ("{shadow}")')
        # Slots follow the roles too: only the primary keeps one, for its standby (a stale one
        # on the standby would hold its WAL forever).
        assert _slots(local_service.router) == [f"shadowshift_{original.replace('-', '_')}"]
        assert _slots(local_service.shadow) == []
        assert len(stats.acked_ids) > 300
        assert missing_acked(local_service.router, stats.acked_ids) == []
        print(f"acked {len(stats.acked_ids)}, failed ops {stats.failed_ops}, "
              f"phases {log.phases}, recovering s {log.seconds_in('recovering')}, "
              f"cutting over s {log.seconds_in('cutting_over')}")
        assert log.phases[log.phases.index("cutting_over"):].count("cutting_over") == 2
        after_first = log.phases[log.phases.index("cutting_over"):]
        assert after_first[:3] == ["cutting_over", "recovering", "protected"], log.phases
        assert any("rejoined as the shadow" in line for line in second.log)


async def test_former_primary_without_data_is_retired_and_replaced(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """A former primary whose data directory is gone cannot rejoin: it is retired through
    `pulumi destroy` and a fresh shadow is copied from the new primary, with no operator
    action beyond resuming the paused protection."""
    _rewindable(local_service)
    spec = _spec(local_service)
    original, shadow = spec.instance_id, f"{spec.instance_id}-shadow"
    async with _protection(temporal_env.client, settings, task_queue, spec) as (handle, log):
        await log.until(lambda s: s.phase == "protected")
        prepare_table(local_service.router)
        with Writer(local_service.router, rate=50) as writer:
            await acked_after(writer)
            await handle.execute_update(InstanceProtectionWorkflow.request_cutover, MIGRATE)
            await handle.signal(InstanceProtectionWorkflow.pause)
            waiting = await log.until(lambda s: s.phase == "recovering" and s.paused)
            assert waiting.next_action == f"resume to recover {original} as the shadow"
            # The former primary dies and its data directory is lost.
            local_service.primary.stop(mode="immediate")
            shutil.rmtree(local_service.primary.data_dir)
            await handle.signal(InstanceProtectionWorkflow.resume)
            done = await log.until(lambda s: s.phase == "protected" and s.recoveries,
                                   timeout_s=240)
            await acked_after(writer, since=time.monotonic())
        print(f"retire path: recovering s {log.seconds_in('recovering')}")
        assert done.recoveries == ["retired"] and done.primary_node == shadow
        text = "\n".join(done.log)
        assert "missing or damaged" in text and f"{original} retired" in text
        # Feedback loop: before retiring it the recovery said the former primary failed (its
        # data is gone) and stopped its probes, so the cutover resolves as a true one.
        store = outcomes_store(settings)
        [record] = [r for r in store.all() if r.kind == "cutover"]
        assert record.port is None
        store.resolve(record.at + record.horizon_s)
        assert store.get(record.record_id).outcome == "failed"  # type: ignore[union-attr]
        with sqlite3.connect(store.path) as db:
            seen = db.execute("SELECT source, status, detail FROM observations WHERE "
                              "record_id = ?", (record.record_id,)).fetchall()
        assert seen == [("recovery", "failed",
                         f"{original}: data directory missing or damaged; retired")], seen
        # The fresh shadow sits where the former primary was, streams synchronously, and
        # holds every acknowledged write.
        assert local_service.primary.initialised()
        with PgEndpoint(port=spec.primary_port).connect() as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert _stream_state(local_service.shadow, original) == (
            "streaming", "sync", f'FIRST 1 ("{original}")')
        assert local_service.haproxy.weights(spec.instance_id) == {original: 0, shadow: 100}
        deadline = time.monotonic() + 10
        while missing_acked(PgEndpoint(port=spec.primary_port), writer.stats.acked_ids):
            assert time.monotonic() < deadline, "acknowledged writes missing on the new shadow"
            await asyncio.sleep(0.2)
        assert missing_acked(local_service.shadow, writer.stats.acked_ids) == []
