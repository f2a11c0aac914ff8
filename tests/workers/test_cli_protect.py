"""``shadowshift`` against a real dev server, worker, PostgreSQL, HAProxy and Pulumi: protect
from YAML, status (table and --json), pause/resume, a refused and a real cutover, the reports,
unknown instances; and unprotect destroying the shadow."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import struct
import time
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts.policy import PolicyChange
from contracts.protection import RiskReport
from tests.conftest import LocalService
from tests.workers.cli_helpers import payload_value, shadowshift, temporal_history, write_spec
from workers.cli_base import NOT_FOUND, REFUSED
from workers.registry import new_worker
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow

RISK = [(12.5, 0.02, "hold"), (47.25, 0.31, "hold"), (81.0, 0.88, "migrate")]


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


async def test_protect_status_cutover_and_report(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, tmp_path: Path,
) -> None:
    """The CLI protects from YAML and follows the phase, joins a second protect (and refuses
    one whose spec differs from the running policy), lists and details the protection, pauses
    (a cutover is then refused, exit 5), resumes, cuts over for real, and reports PNGs whose
    series equal what the workflow history holds."""
    client: Client = temporal_env.client
    address = client.service_client.config.target_host
    conn = ["--address", address]
    instance = local_service.request.instance_id
    spec = write_spec(tmp_path / "spec.yaml", local_service)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            protect = await shadowshift("protect", str(spec), "--task-queue", task_queue, *conn)
            assert protect.returncode == 0, protect.stderr
            assert f"Started protection of {instance}" in protect.stderr
            assert "protect-" + instance + ": protected" in protect.stderr
            again = await shadowshift("protect", str(spec), "--task-queue", task_queue,
                                      "--json", *conn)
            assert again.returncode == 0, again.stderr
            assert json.loads(again.stdout) == {"instance_id": instance, "joined": True,
                                                "phase": "protected", "waited": True,
                                                "workflow_id": f"protect-{instance}"}

            listed = await shadowshift("status", "--json", *conn)
            rows = {r["instance_id"]: r for r in json.loads(listed.stdout)}
            assert rows[instance]["phase"] == "protected" and rows[instance]["tier"] == 2
            shown = await shadowshift("status", *conn)
            line = next(x for x in shown.stdout.splitlines() if x.startswith(instance))
            assert line.split()[1:4] == ["local", "2", "protected"], shown.stdout
            detail = json.loads((await shadowshift("status", instance, "--json", *conn)).stdout)
            assert detail["phase"] == "protected" and detail["shadow_healthy"] is True
            assert detail["policy"]["threshold"] == 60
            text = (await shadowshift("status", instance, *conn)).stdout
            assert "protected" in text and "(threshold 60)" in text and "next action" in text

            # What the fleet watcher would send, and a policy change, for the report.
            handle = client.get_workflow_handle(f"protect-{instance}")
            for score, probability, decision in RISK:
                await handle.signal(InstanceProtectionWorkflow.report_risk,
                                    RiskReport(score, probability, decision, at=time.time()))
                await asyncio.sleep(0.5)
            await handle.execute_update(InstanceProtectionWorkflow.set_policy,
                                        PolicyChange(threshold=70.0, advisory=True))

            changed = await shadowshift("protect", str(spec), "--task-queue", task_queue, *conn)
            assert changed.returncode == REFUSED, changed.stderr
            assert "policy.threshold 70.0 -> 60.0" in changed.stderr

            assert (await shadowshift("pause", instance, *conn)).returncode == 0
            refused = await shadowshift("cutover", instance, *conn)
            assert refused.returncode == REFUSED
            assert refused.stderr.strip().count("\n") == 0 and "paused" in refused.stderr
            assert (await shadowshift("resume", instance, *conn)).returncode == 0

            cutover = await shadowshift("cutover", instance, "--reason", "cli test", *conn)
            assert cutover.returncode == 0, cutover.stderr
            assert "Cutover completed: traffic on " + instance + "-shadow" in cutover.stderr
            assert local_service.haproxy.weights(instance)[f"{instance}-shadow"] == 100

            report = await shadowshift("report", instance, "--out", str(tmp_path / "r"),
                                       "--json", *conn)
            assert report.returncode == 0, report.stderr
            files = [Path(f) for f in json.loads(report.stdout)["files"]]
            for png in (f for f in files if f.suffix == ".png"):
                assert png.stat().st_size > 15_000, f"{png} looks empty"
                assert min(_png_size(png)) >= 300
            await _series_match_history(address, instance, tmp_path / "r" / "report.json")

            fleet = await shadowshift("report", "--fleet", "--out", str(tmp_path / "f"),
                                      "--json", *conn)
            assert fleet.returncode == 0, fleet.stderr
            mine = next(r for r in json.loads(fleet.stdout)["protections"]
                        if r["instance_id"] == instance)
            assert (mine["readiness_score"], mine["threshold"], mine["cutovers"]) == \
                (81.0, 70.0, 1)
            assert (tmp_path / "f" / "fleet.png").stat().st_size > 10_000

            unknown = await shadowshift("status", "db-nosuch", *conn)
            assert unknown.returncode == NOT_FOUND
            assert unknown.stderr.count("\n") == 1 and "unknown instance" in unknown.stderr
            await handle.terminate("test over")


async def _series_match_history(address: str, instance: str, report_json: Path) -> None:
    """The report's series equal what ``temporal workflow show`` prints for the same run."""
    report = json.loads(report_json.read_text())
    # The protection goes on (recovery after the cutover): compare what the report read.
    events = (await temporal_history(address, f"protect-{instance}"))[:report["events_read"][0]]
    signals = [e["workflowExecutionSignaledEventAttributes"] for e in events
               if "workflowExecutionSignaledEventAttributes" in e]
    sent = [payload_value(s["input"]["payloads"][0]) for s in signals
            if s["signalName"] == "report_risk"]
    assert [(r["readiness_score"], r["failure_probability"], r["decision"], r["at"])
            for r in sent] == \
        [(r["readiness_score"], r["failure_probability"], r["decision"], r["at"])
         for r in report["risk"]]
    assert [t["threshold"] for t in report["thresholds"]] == [60.0, 70.0]

    completed = [e["activityTaskCompletedEventAttributes"] for e in events
                 if "activityTaskCompletedEventAttributes" in e]
    results = [payload_value(c["result"]["payloads"][0]) for c in completed if c.get("result")]
    lags = [r["lag_bytes"] for r in results
            if isinstance(r, dict) and isinstance(r.get("lag_bytes"), int)]
    assert [p["lag_bytes"] for p in report["lag"]] == lags
    assert report["lag"], "wait_for_sync's status is in the history"

    children = [e["childWorkflowExecutionCompletedEventAttributes"] for e in events
                if "childWorkflowExecutionCompletedEventAttributes" in e
                and e["childWorkflowExecutionCompletedEventAttributes"]["workflowType"]["name"]
                == "CutoverWorkflow"]
    assert len(children) == len(report["cutovers"]) == 1
    result = payload_value(children[0]["result"]["payloads"][0])
    cutover = report["cutovers"][0]
    assert cutover["outcome"] == result["outcome"] == "completed"
    assert cutover["step_ms"] == result["step_ms"]
    child_events = await temporal_history(address, cutover["workflow_id"], cutover["run_id"])
    scheduled = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                 for e in child_events if "activityTaskScheduledEventAttributes" in e]
    assert [a["name"] for a in cutover["activities"]] == scheduled


async def test_unprotect_destroys_the_shadow(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, tmp_path: Path,
) -> None:
    """unprotect is refused while the protection provisions, then destroys the shadow
    (router entry and data directory gone) while the primary keeps serving, and the
    workflow completes."""
    client: Client = temporal_env.client
    conn = ["--address", client.service_client.config.target_host]
    instance = local_service.request.instance_id
    spec = write_spec(tmp_path / "spec.yaml", local_service)
    started = await shadowshift("protect", str(spec), "--task-queue", task_queue, "--no-wait",
                                "--json", *conn)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["phase"] == "provisioning"
    # Sent before any worker runs, the update meets the protection while it provisions.
    early_call = asyncio.ensure_future(shadowshift("unprotect", instance, *conn))
    await asyncio.sleep(5)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            early = await early_call
            assert early.returncode == REFUSED, early.stderr
            # (A very slow CLI start may meet it syncing instead; both are refusals.)
            assert re.search(r"cannot unprotect in phase (provisioning|syncing)", early.stderr)
            waited = await shadowshift("protect", str(spec), "--task-queue", task_queue, *conn)
            assert waited.returncode == 0, waited.stderr
            assert f"{instance}-shadow" in local_service.haproxy.weights(instance)

            ended = await shadowshift("unprotect", instance, "--json", *conn)
            assert ended.returncode == 0, ended.stderr
            assert json.loads(ended.stdout)["phase"] == "unprotected"
            assert f"{instance}-shadow" not in local_service.haproxy.weights(instance)
            assert not (settings.state_dir / "instances" / instance / "shadow").exists()
            with local_service.router.connect() as conn_db:
                assert conn_db.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)
            handle = client.get_workflow_handle(f"protect-{instance}")
            await asyncio.wait_for(handle.result(), timeout=10)
            gone = await shadowshift("pause", instance, *conn)
            assert gone.returncode == NOT_FOUND and "not protected" in gone.stderr


async def test_protect_returns_once_a_protection_without_a_standing_shadow_watches(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, tmp_path: Path,
) -> None:
    """A tier-3 spec with ``standing_shadow: false`` never reaches ``protected`` on its own;
    protect returns as soon as it watches unshadowed, with no shadow made."""
    client: Client = temporal_env.client
    conn = ["--address", client.service_client.config.target_host]
    instance = local_service.request.instance_id
    spec = write_spec(tmp_path / "spec.yaml", local_service, tier=3)
    spec.write_text(spec.read_text() + "standing_shadow: false\n")
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue):
            started = time.monotonic()
            protect = await shadowshift("protect", str(spec), "--task-queue", task_queue,
                                        "--timeout", "60", *conn)
            assert protect.returncode == 0, protect.stderr
            assert "without a standing shadow" in protect.stderr
            assert time.monotonic() - started < 55
            assert f"{instance}-shadow" not in local_service.haproxy.weights(instance)
            await client.get_workflow_handle(f"protect-{instance}").terminate("test over")
