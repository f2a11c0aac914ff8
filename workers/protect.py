"""Client-side helpers to start protection: one protection per instance, one fleet watcher.

Used by the CLI, the demo and the tests; the ``temporal`` CLI can do the same (README).
"""

from __future__ import annotations

import dataclasses

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from activities.watch import WatchFleetInput
from workflows import search_attributes
from workflows.fleet_watcher import FleetWatcherWorkflow, watcher_id
from workflows.protection import InstanceProtectionWorkflow, ProtectionState
from workflows.protection_spec import ProtectionSpec, validate_spec


async def start_protection(
    client: Client, spec: ProtectionSpec, *, task_queue: str
) -> WorkflowHandle[InstanceProtectionWorkflow, None]:
    """Validate ``spec`` and start (or join) the instance's protection.

    A second start for the same instance joins the running protection instead of creating a
    second one (``USE_EXISTING``), so an instance is never protected twice.

    Raises:
        SpecError: the spec is invalid; nothing was started.
    """
    validate_spec(spec)
    return await client.start_workflow(
        InstanceProtectionWorkflow.run,
        ProtectionState(spec=spec),
        id=spec.workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo={"spec": dataclasses.asdict(spec)},
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.INSTANCE, spec.instance_id),
                SearchAttributePair(search_attributes.PLATFORM, spec.platform),
                SearchAttributePair(search_attributes.PHASE, "provisioning"),
                SearchAttributePair(search_attributes.TIER, spec.tier),
            ]
        ),
    )


async def ensure_fleet_watcher(
    client: Client, *, task_queue: str, request: WatchFleetInput | None = None
) -> WorkflowHandle[FleetWatcherWorkflow, None]:
    """Start the task queue's fleet watcher unless it is already running."""
    return await client.start_workflow(
        FleetWatcherWorkflow.run,
        request or WatchFleetInput(),
        id=watcher_id(task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
