"""Every update validator of the protection workflow with hostile input, on a real Temporal
dev server: each hostile request is rejected with a message naming the field at fault,
nothing is recorded (a rejected update leaves no event), the protection keeps running with
its policy unchanged. The policy validator's logic is also checked as a property, for any
values a JSON payload can carry."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from contracts.policy import Policy, PolicyChange, PolicyError, validate_policy
from contracts.protection import ProtectionApi
from contracts.spec import ProtectionSpec
from workers.registry import new_worker
from workers.settings import Settings
from workflows.protection import InstanceProtectionWorkflow

POLICY_FIELDS = [name for name in PolicyChange.__dataclass_fields__]

_JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


@settings(max_examples=100, deadline=None)
@given(change=st.builds(PolicyChange, **{name: _JSON_VALUE for name in POLICY_FIELDS}))
def test_the_policy_validator_accepts_or_names_the_field_for_any_values(
    change: PolicyChange,
) -> None:
    """What ``set_policy``'s validator runs: any value a payload could decode to gives a
    valid policy or a :class:`PolicyError` starting with ``policy.<field>``."""
    try:
        policy = validate_policy(change.applied_to(Policy()))
    except PolicyError as err:
        field = str(err).removeprefix("policy.").split(" ")[0]
        assert field in POLICY_FIELDS, str(err)
    else:
        assert 0 <= policy.threshold <= 100 and math.isfinite(policy.cooldown_s)


HOSTILE_POLICY: list[tuple[Any, str]] = [
    ({"threshold": "abc"}, "threshold"),
    ({"threshold": float("nan")}, "threshold"),
    ({"threshold": 1e308 * 10}, "threshold"),
    ({"threshold": 10**400}, "threshold"),
    ({"threshold": [60]}, "threshold"),
    ({"consecutive_readings": 1.5}, "consecutive_readings"),
    ({"consecutive_readings": True}, "consecutive_readings"),
    ({"cooldown_s": -1}, "cooldown_s"),
    ({"advisory": "yes"}, "advisory"),
    ({"profile": "x; rm -rf /"}, "profile"),
    ({"profile": {"$(reboot)": 1}}, "profile"),
    ({"failover_after_s": 0.1}, "failover_after_s"),
]
"""set_policy payloads, each with the field its rejection must name."""

HOSTILE_CUTOVER: list[tuple[Any, str]] = [
    ({"trigger": "rm -rf /"}, "trigger"),
    ({"trigger": ["operator"]}, "trigger"),
    ({"trigger": None}, "trigger"),
    ({"reason": "x" * 20_000}, "reason"),
    ({"reason": 42}, "reason"),
    ({"force": "yes", "trigger": "bogus"}, "force"),
    ({"evidence": "down"}, "evidence"),
]
"""request_cutover payloads (the workflow has no healthy shadow yet, so even a valid one is
refused; these must be refused for their field first)."""

HOSTILE_UNPROTECT: list[tuple[Any, str]] = [
    ({"reason": "x" * 20_000}, "reason"),
    ({"reason": {"nested": True}}, "reason"),
]


async def _rejection(handle: Any, update: str, payload: Any) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await asyncio.wait_for(handle.execute_update(update, payload), 30)
    cause = rejected.value.cause
    return f"{cause}" + (f" {cause.cause}" if getattr(cause, "cause", None) else "")


@pytest.mark.integration
async def test_hostile_updates_are_rejected_naming_the_field_and_record_nothing(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
) -> None:
    """A protection waiting for its first activity gets every hostile update: each is
    rejected naming its field, none is accepted into history, the workflow runs on with its
    policy as it was."""
    client = temporal_env.client
    instance_id = f"hostile-{uuid.uuid4().hex[:8]}"
    spec = ProtectionSpec(instance_id=instance_id, primary_port=21011, shadow_port=21012,
                          router_port=21013)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue,
                              with_activities=False):
            handle = await client.start_workflow(InstanceProtectionWorkflow.run, spec,
                                                 id=spec.workflow_id, task_queue=task_queue)
            try:
                before = (await handle.query(ProtectionApi.status)).policy
                cases = ([("set_policy", *case) for case in HOSTILE_POLICY]
                         + [("request_cutover", *case) for case in HOSTILE_CUTOVER]
                         + [("unprotect", *case) for case in HOSTILE_UNPROTECT])
                for update, payload, field in cases:
                    message = await _rejection(handle, update, payload)
                    assert field in message, (update, payload, message)
                status = await handle.query(ProtectionApi.status)
                assert status.policy == before
                history = await handle.fetch_history()
                accepted = [e for e in history.events if e.event_type in (
                    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
                    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)]
                assert accepted == []
                assert (await handle.describe()).status.name == "RUNNING"
            finally:
                await handle.terminate("test over")
