"""Discovery: the protections a watcher watches, from Temporal visibility (free of actions).

Each running ``InstanceProtectionWorkflow`` on the watcher's task queue carries its spec and
its roles in its memo (``contracts.protection.MEMO_SPEC`` / ``MEMO_ROLES``; the workflow
writes them when it starts, when ``set_policy`` changes the policy and after each cutover),
and its phase and tier in search attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from temporalio.client import Client

from activities.watching.items import Target
from contracts import search_attributes
from contracts.protection import MEMO_ROLES, MEMO_SPEC
from contracts.shadow import PlatformRequest
from contracts.spec import SpecError, spec_from_dict, validate_spec

log = logging.getLogger(__name__)

PROTECTION_QUERY = "WorkflowType = 'InstanceProtectionWorkflow' AND ExecutionStatus = 'Running'"


async def discover(client: Client, task_queue: str) -> dict[str, Target]:
    """Running protections on ``task_queue`` by instance id; one whose memo is unusable is
    logged and left out."""
    found: dict[str, Target] = {}
    query = f"{PROTECTION_QUERY} AND TaskQueue = '{task_queue}'"
    async for execution in client.list_workflows(query):
        memo = await execution.memo()
        try:
            request = request_from_memo(memo)
        except (SpecError, TypeError, ValueError) as err:
            log.warning("Not watching %s: unusable memo (%s).", execution.id, err)
            continue
        attributes = execution.typed_search_attributes
        phase = attributes.get(search_attributes.PHASE) or ""
        tier = attributes.get(search_attributes.TIER) or request.spec.tier
        found[request.instance_id] = Target(execution.id, request, phase, int(tier))
    return found


def request_from_memo(memo: Mapping[str, Any]) -> PlatformRequest:
    """The platform request a protection's memo describes.

    Raises:
        SpecError: no spec, or an invalid one.
    """
    data = memo.get(MEMO_SPEC)
    if not isinstance(data, dict):
        raise SpecError("no spec in the memo (the protection writes it at its first step)")
    spec = validate_spec(spec_from_dict(data, strict=False))
    roles = memo.get(MEMO_ROLES) or {}
    return PlatformRequest(spec, serving_node=str(roles.get("serving_node", "")),
                           original_home=str(roles.get("original_home", "")))
