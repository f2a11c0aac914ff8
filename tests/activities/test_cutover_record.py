"""The cutover log keeps one event per cutover run, even though every cutover of an instance
shares its workflow id (``cutover-<instance>``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.cutover import PlatformCutoverActivities
from contracts.cutover import CutoverPlan, FinaliseRequest, cutover_workflow_id
from infra.factory import Platforms
from infra.platform import PlatformContext
from tests.conftest import local_request


def _finalise(tmp_path: Path, instance: str) -> tuple[PlatformCutoverActivities, CutoverPlan]:
    """Cutover activities (finalise needs no stack) and a planned cutover of ``instance``."""
    activities = PlatformCutoverActivities(Platforms(PlatformContext(None, tmp_path)), tmp_path)
    plan = CutoverPlan(local_request(instance, 15432, 15433, 15434), "planned",
                       cutover_workflow_id(instance), instance, f"{instance}-shadow",
                       {instance: 100, f"{instance}-shadow": 0})
    return activities, plan


def _in_run(env: ActivityEnvironment, run_id: str) -> ActivityEnvironment:
    env.info = dataclasses.replace(env.info, workflow_run_id=run_id)
    return env


def test_each_cutover_run_is_logged_once(tmp_path: Path) -> None:
    """A cutover and the cutover back (same workflow id, two runs) are both logged; a retried
    finalise of a run adds nothing."""
    activities, plan = _finalise(tmp_path, "db-log")
    back = dataclasses.replace(plan, source=plan.target, target=plan.source)
    env = ActivityEnvironment()
    for run_id, cutover in (("run-1", plan), ("run-1", plan), ("run-2", back)):
        log = _in_run(env, run_id).run(activities.finalise_cutover,
                                       FinaliseRequest(cutover, "completed", {}))
    events = [json.loads(line) for line in Path(log).read_text().splitlines()]
    assert [(e["run_id"], e["primary"]) for e in events] == [
        ("run-1", "db-log-shadow"), ("run-2", "db-log")]


def test_a_torn_log_line_does_not_block_later_cutovers(tmp_path: Path) -> None:
    """A worker killed mid-append leaves half a line; the next finalise still records its
    cutover (on a line of its own) instead of failing on every retry."""
    activities, plan = _finalise(tmp_path, "db-torn")
    env = ActivityEnvironment()
    request = FinaliseRequest(plan, "completed", {})
    log = Path(_in_run(env, "run-1").run(activities.finalise_cutover, request))
    with log.open("a") as out:
        out.write('{"workflow_id": "cutover-db-torn", "run_id": "run-2", "prim')  # torn
    _in_run(env, "run-3").run(activities.finalise_cutover, request)
    lines = log.read_text().splitlines()
    assert lines[-1].startswith("{") and json.loads(lines[-1])["run_id"] == "run-3"
    assert [json.loads(lines[0])["run_id"]] == ["run-1"]


def test_finalise_outside_a_workflow_run_is_refused(tmp_path: Path) -> None:
    """Without a run id there is no once-only key: refused, non-retryable, nothing logged."""
    activities, plan = _finalise(tmp_path, "db-alone")
    env = _in_run(ActivityEnvironment(), "")
    with pytest.raises(ApplicationError, match="no workflow run id") as refused:
        env.run(activities.finalise_cutover, FinaliseRequest(plan, "completed", {}))
    assert refused.value.non_retryable
    assert not list(tmp_path.rglob("*.jsonl"))
