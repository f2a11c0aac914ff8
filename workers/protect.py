"""Client-side helpers to start protection: one protection per instance, one fleet watcher.

Used by the CLI, the demo and the tests. ``temporal workflow start --type
InstanceProtectionWorkflow --input-file spec.json`` does the same: the workflow validates its
spec and writes its memo itself (docs/operations.md, "Protecting an instance").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from contracts import search_attributes
from contracts.protection import MEMO_ROLES, MEMO_SPEC, ProtectionStatus
from contracts.spec import ProtectionSpec, spec_to_dict, validate_spec
from contracts.watch import WatchFleetInput, watcher_id
from workflows.fleet_watcher import FleetWatcherWorkflow
from workflows.protection import InstanceProtectionWorkflow
from workflows.protection_details import static_details, static_summary


async def start_protection(
    client: Client, spec: ProtectionSpec, *, task_queue: str
) -> WorkflowHandle[InstanceProtectionWorkflow, None]:
    """Validate ``spec`` and start (or join) the instance's protection.

    A second start for the same instance joins the running protection instead of creating a
    second one (``USE_EXISTING``), so an instance is never protected twice. The memo and
    search attributes go with the start (free), so the workflow need not write them.

    Raises:
        SpecError: the spec is invalid; nothing was started.
    """
    validate_spec(spec)
    return await client.start_workflow(
        InstanceProtectionWorkflow.run,
        spec,
        id=spec.workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo={MEMO_SPEC: spec_to_dict(spec),
              MEMO_ROLES: {"serving_node": "", "original_home": ""}},
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.INSTANCE, spec.instance_id),
                SearchAttributePair(search_attributes.PLATFORM, spec.platform),
                SearchAttributePair(search_attributes.PHASE, "provisioning"),
                SearchAttributePair(search_attributes.TIER, spec.tier),
            ]
        ),
        static_summary=static_summary(spec),
        static_details=static_details(spec),
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
        static_summary=f"Fleet watcher of task queue {task_queue}",
    )


async def status_when(handle: WorkflowHandle[Any, Any], done: Callable[[ProtectionStatus], Any],
                      timeout_s: float, interval_s: float = 0.25) -> ProtectionStatus:
    """The protection's first status that satisfies ``done``, queried every ``interval_s``.

    Raises:
        TimeoutError: none did within ``timeout_s``.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            status: ProtectionStatus = await handle.query(InstanceProtectionWorkflow.status)
            if done(status):
                return status
            await asyncio.sleep(interval_s)
