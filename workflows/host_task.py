"""``HostTaskWorkflow``: run one agent task on its host, for operators and tools.

What a protection routes to agents on its own (copies, rewinds, probes) needs no operator;
this workflow is for the tasks around it: create a primary for a new instance on a host
(``ensure_primary``), ask an agent who it is (``hello``). Started with the workflow id
:func:`host_task_workflow_id`, so two identical requests at once run once.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from contracts.agent_tasks import AgentTask
from workflows.agent_tasks import run_agent_task


def host_task_workflow_id(task: AgentTask) -> str:
    """One id per host and task, e.g. ``host-task-db-a-ensure-primary-db1``."""
    what = task.what().replace(" on ", " ").replace(" ", "-")
    return f"host-task-{task.host}-{what}"


@workflow.defn
class HostTaskWorkflow:
    """Runs one :class:`~contracts.agent_tasks.AgentTask` and returns its result."""

    @workflow.run
    async def run(self, task: AgentTask) -> Any:
        """Route the task to its host's agent; an agent that does not take it fails the
        workflow with ``AgentDown`` naming the host."""
        return await run_agent_task(task)
