"""The report covers a protection's whole life: series read across continue-as-new runs, in
order, and drawn into non-trivial PNGs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from contracts.protection import ProtectionState, RiskReport
from contracts.spec import ProtectionSpec
from workers.registry import new_worker
from workers.report_history import read_history
from workers.report_plot import write_report
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow

SCORES = [5.0 + 7.5 * i for i in range(12)]


async def test_report_follows_continue_as_new(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    """Risk reports sent across several runs come back complete and in order, the runs are
    listed oldest first, and ``--runs`` limits how far back the report reads."""
    client: Client = temporal_env.client
    spec = ProtectionSpec("db-history", "local", 2, 21001, 21002, 21003)
    # Already protected: the workflow waits for messages without provisioning anything, and
    # continues as new after a short history so a dozen signals span several runs.
    state = ProtectionState(spec=spec, phase="protected", shadow_healthy=True,
                            continue_as_new_events=25)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, args=[spec, state], id=spec.workflow_id,
                task_queue=task_queue)
            for i, score in enumerate(SCORES):
                await client.get_workflow_handle(spec.workflow_id).signal(
                    InstanceProtectionWorkflow.report_risk,
                    RiskReport(score, score / 100, "hold", at=1_790_000_000.0 + 60 * i))
                await asyncio.sleep(0.2)  # one workflow task each: the history grows
            async with asyncio.timeout(30):
                while (await client.get_workflow_handle(spec.workflow_id).query(
                        InstanceProtectionWorkflow.status)).readiness_score != SCORES[-1]:
                    await asyncio.sleep(0.2)
            history = await read_history(client, spec.instance_id, spec.workflow_id)
            assert len(history.run_ids) >= 2, "the test needs continue-as-new to happen"
            first = await client.get_workflow_handle(spec.workflow_id,
                                                     run_id=handle.first_execution_run_id).describe()
            assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
            assert history.run_ids[0] == handle.first_execution_run_id
            assert [p.readiness_score for p in history.risk] == SCORES
            assert [p.at for p in history.risk] == sorted(p.at for p in history.risk)

            latest_only = await read_history(client, spec.instance_id, spec.workflow_id,
                                             max_runs=1)
            assert len(latest_only.run_ids) == 1
            assert [p.readiness_score for p in latest_only.risk] == \
                SCORES[len(SCORES) - len(latest_only.risk):]
            assert len(latest_only.risk) < len(SCORES)

            files = write_report(history, tmp_path / "report")
            saved = json.loads((tmp_path / "report" / "report.json").read_text())
            assert [p["readiness_score"] for p in saved["risk"]] == SCORES
            for png in (f for f in files if f.suffix == ".png"):
                assert png.stat().st_size > 10_000, png
            await client.get_workflow_handle(spec.workflow_id).terminate("test over")
