"""Feedback-loop calls for workflow code: one line each where the protection acts.

The protection workflow records every cutover (and every cutover that was asked for but did
not happen) with :func:`record_outcome`, and the recovery path tells what it learned about a
former primary with :func:`report_outcome_evidence`: healthy when it rejoined, and before
retiring it what the facts say (:func:`retired_evidence`) with ``final=True``, so the closed port
of a node destroyed on purpose is not taken for a failure.

Both are guarded by ``workflow.patched`` ids, so protections whose histories were written
before the feedback loop (or one of its later changes) existed replay unchanged. Failures to
record are logged and never fail the protection: losing one training row is better than
losing the instance's watch.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.errors import NON_RETRYABLE_TYPES
    from activities.outcomes import OutcomeEvidence, RecordOutcomeInput
    from activities.recovery import NodeFacts
    from workflows.protection_spec import ProtectionSpec

PATCH_ID = "record-outcomes"
"""``workflow.patched`` id of the feedback-loop calls."""
RUN_ID_PATCH_ID = "outcome-record-run-id"
"""``workflow.patched`` id of cutover record ids that name the protection's first run."""
RETIRE_EVIDENCE_PATCH_ID = "retire-outcome-evidence"
"""``workflow.patched`` id of the evidence the recovery path reports before retiring."""
DATA_GONE = "missing or damaged"
"""What a rejoin refused for a lost data directory says (activities/recovery.py)."""

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


class _Risk(Protocol):
    readiness_score: float
    failure_probability: float


def cutover_record(spec: ProtectionSpec, cutovers: int, at: float, reason: str,
                   risk: _Risk | None, *, by_policy: bool = False) -> RecordOutcomeInput:
    """The record of the protection's ``cutovers``-th cutover (unique and replay-stable).

    The id names the protection's first run: the workflow id is ``protect-<instance>`` and
    the count starts at 1 again when an instance is protected anew, so without it the second
    protection's cutovers would be ignored as already stored. The first run id survives
    continue-as-new. It has no endpoint to probe: the cutover stops the former primary on
    purpose; the recovery path says where to watch it again (:func:`rejoined_evidence`)."""
    info = workflow.info()
    protection = info.workflow_id
    if workflow.patched(RUN_ID_PATCH_ID):
        protection = f"{protection}:{info.first_execution_run_id}"
    return RecordOutcomeInput(
        f"{protection}:cutover:{cutovers}", spec.instance_id, "cutover", at,
        reason, risk.readiness_score if risk else None,
        risk.failure_probability if risk else None, port=None, policy_decided=by_policy)


def refused_record(spec: ProtectionSpec, serving_node: str, at: float, reason: str,
                   risk: _Risk | None) -> RecordOutcomeInput:
    """The record of a cutover that was attempted and changed nothing; the serving node
    (still the primary) is probed over the horizon."""
    return RecordOutcomeInput(
        f"{workflow.info().workflow_id}:refused:{int(at)}", spec.instance_id, "refused", at,
        reason, risk.readiness_score if risk else None,
        risk.failure_probability if risk else None, port=_port_of(spec, serving_node))


def rejoined_evidence(spec: ProtectionSpec, former: str, at: float) -> OutcomeEvidence:
    """The former primary rejoined as the shadow: healthy now, and watched from now on."""
    return OutcomeEvidence(spec.instance_id, "healthy", at, "recovery",
                           f"{former} rejoined as the shadow", probe_port=_port_of(spec, former))


def retired_evidence(spec: ProtectionSpec, former: str, at: float, facts: NodeFacts | None,
                     rejoin_error: str) -> OutcomeEvidence:
    """What the recovery knows of a former primary it is about to retire (``final``: its
    endpoint goes away on purpose, so it is probed no more).

    ``failed`` when it did not answer at inspection or its data directory is gone; ``healthy``
    when it answered and is retired only because it cannot be rewound (a configuration
    matter); ``degraded`` when it answered but the rejoin failed for another reason."""
    answered = facts is not None and facts.reachable
    if DATA_GONE in rejoin_error:
        status, detail = "failed", f"{former}: data directory {DATA_GONE}"
    elif not answered:
        status, detail = "failed", f"{former} did not answer after the cutover"
    elif not rejoin_error:
        status, detail = "healthy", f"{former} answered; retired only as it cannot be rewound"
    else:
        status, detail = "degraded", f"{former} answered but could not rejoin: {rejoin_error}"
    return OutcomeEvidence(spec.instance_id, status, at, "recovery",
                           f"{detail}; retired", final=True)


def _port_of(spec: ProtectionSpec, node: str) -> int | None:
    """Port of a node of the local pair (the original primary is named after the instance);
    other platforms have no port to probe."""
    if spec.platform != "local":
        return None
    return spec.primary_port if node in ("", spec.instance_id) else spec.shadow_port


async def record_outcome(record: RecordOutcomeInput) -> None:
    """Store a cutover, refusal or near miss (idempotent by ``record.record_id``)."""
    await _best_effort("record_outcome", record, f"Outcome record {record.record_id}")


async def report_outcome_evidence(evidence: OutcomeEvidence) -> None:
    """Attach what the caller knows about an instance's health to its open records."""
    await _best_effort("report_outcome_evidence", evidence,
                       f"Outcome evidence for {evidence.instance_id}")


async def _best_effort(activity: str, request: object, what: str) -> None:
    """Run a feedback-loop activity behind ``PATCH_ID``; a failure is logged, not raised."""
    if not workflow.patched(PATCH_ID):
        return
    try:
        await workflow.execute_activity(
            activity, request, start_to_close_timeout=timedelta(seconds=30), retry_policy=_RETRY)
    except ActivityError as err:
        workflow.logger.warning("%s not stored: %s", what, err.cause or err)
