"""Safe deploys: every recorded workflow history replays against the current workflow code.

The histories in ``tests/workflows/histories/`` were recorded by ``make histories``
(``tests/workflows/record_histories.py``) from real runs: a protection's whole lifecycle
(messages, a planned cutover, a rejoin, an emergency cutover, a retirement, unprotect), a
protection continued as new, both cutover children, the fleet watcher up to its
continue-as-new, a retraining run and an outcome round. A change to workflow code that would
break a running workflow — a different sequence of commands for the same history — fails
here, in ``make test``, before it is deployed; change such code behind ``workflow.patched``
and keep the old branch while recorded histories need it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from contracts.wire import DATA_CONVERTER
from workers.registry import WORKFLOWS, workflow_runner

HISTORIES = Path(__file__).resolve().parent / "histories"
RECORDED = sorted(HISTORIES.glob("*.json"))


def _workflow_type(path: Path) -> str:
    first = json.loads(path.read_text())["events"][0]
    return str(first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def test_every_workflow_type_has_a_recorded_history() -> None:
    """The replay below covers each workflow the worker registers (so an empty or stale
    folder cannot make it pass)."""
    recorded = {_workflow_type(path) for path in RECORDED}
    assert recorded == {w.__name__ for w in WORKFLOWS}, recorded
    names = {path.stem for path in RECORDED}
    assert {"protection-lifecycle", "protection-continued-as-new", "cutover-planned",
            "cutover-emergency", "watcher"} <= names


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_recorded_history_replays(path: Path) -> None:
    """Replaying the history with today's workflow code yields the same commands."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=list(WORKFLOWS), workflow_runner=workflow_runner(),
                        data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
