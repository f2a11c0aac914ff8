"""The cutover log keeps one event per cutover run, even though every cutover of an instance
shares its workflow id (``cutover-<instance>``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import cast

from temporalio.testing import ActivityEnvironment

from activities.cutover import CutoverActivities, FinaliseRequest
from activities.cutover_checks import CutoverPlan
from activities.shadow import ShadowRequest
from infra.pulumi_engine import StackDriver
from workflows.cutover import cutover_workflow_id


def test_each_cutover_run_is_logged_once(tmp_path: Path) -> None:
    """A cutover and the cutover back (same workflow id, two runs) are both logged; a retried
    finalise of a run adds nothing."""
    activities = CutoverActivities(cast(StackDriver, None), tmp_path)  # finalise needs no stack
    shadow = ShadowRequest("db-log", 15432, 15433, 15434)
    plan = CutoverPlan(shadow, "planned", cutover_workflow_id("db-log"), "db-log",
                       "db-log-shadow", {"db-log": 100, "db-log-shadow": 0})
    back = dataclasses.replace(plan, source=plan.target, target=plan.source)
    env = ActivityEnvironment()
    for run_id, cutover in (("run-1", plan), ("run-1", plan), ("run-2", back)):
        env.info = dataclasses.replace(env.info, workflow_run_id=run_id)
        log = env.run(activities.finalise_cutover, FinaliseRequest(cutover, "completed", {}))
    events = [json.loads(line) for line in Path(log).read_text().splitlines()]
    assert [(e["run_id"], e["primary"]) for e in events] == [
        ("run-1", "db-log-shadow"), ("run-2", "db-log")]


def test_a_torn_log_line_does_not_block_later_cutovers(tmp_path: Path) -> None:
    """A worker killed mid-append leaves half a line; the next finalise still records its
    cutover (on a line of its own) instead of failing on every retry."""
    activities = CutoverActivities(cast(StackDriver, None), tmp_path)
    shadow = ShadowRequest("db-torn", 15432, 15433, 15434)
    plan = CutoverPlan(shadow, "planned", cutover_workflow_id("db-torn"), "db-torn",
                       "db-torn-shadow", {"db-torn": 100, "db-torn-shadow": 0})
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_run_id="run-1")
    log = Path(env.run(activities.finalise_cutover, FinaliseRequest(plan, "completed", {})))
    with log.open("a") as out:
        out.write('{"workflow_id": "cutover-db-torn", "run_id": "run-2", "prim')  # torn
    env.info = dataclasses.replace(env.info, workflow_run_id="run-3")
    env.run(activities.finalise_cutover, FinaliseRequest(plan, "completed", {}))
    lines = log.read_text().splitlines()
    assert lines[-1].startswith("{") and json.loads(lines[-1])["run_id"] == "run-3"
    assert [json.loads(lines[0])["run_id"]] == ["run-1"]
