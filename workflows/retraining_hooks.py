"""Feedback-loop calls for workflow code: one line each where the protection acts.

The protection workflow records every cutover (and every cutover that was asked for but did
not happen) with :func:`record_outcome`, and the recovery path tells what it learned about a
former primary with :func:`report_outcome_evidence`: healthy when it rejoined, and before
retiring it what the facts say (:func:`retired_evidence`) with ``final=True``, so the closed
port of a node destroyed on purpose is not taken for a failure. Where a node can be probed
is the platform's business (the activity asks it), so records name nodes, not addresses.

Failures to record are logged and never fail the protection: losing one training row is
better than losing the instance's watch.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from contracts.errors import NON_RETRYABLE_TYPES
from contracts.outcomes import OutcomeActivities, OutcomeEvidence, RecordOutcomeInput
from contracts.protection import ProtectionState
from contracts.shadow import NodeFacts, PlatformRequest

DATA_GONE = "missing or damaged"
"""What a rejoin refused for a lost data directory says (``infra/local/platform.py``)."""

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


def _instance(state: ProtectionState) -> PlatformRequest:
    return PlatformRequest(state.spec, state.serving_node, state.original_home)


def _risk(state: ProtectionState) -> tuple[float | None, float | None]:
    risk = state.latest_risk
    return (risk.readiness_score, risk.failure_probability) if risk else (None, None)


def cutover_record(state: ProtectionState, reason: str, *,
                   by_policy: bool = False) -> RecordOutcomeInput:
    """The record of the protection's latest cutover (unique and replay-stable).

    The id names the protection's first run: the workflow id is ``protect-<instance>`` and
    the count starts at 1 again when an instance is protected anew. Nothing is probed: the
    cutover stops the former primary on purpose; the recovery path says where to watch it
    again (:func:`rejoined_evidence`)."""
    score, probability = _risk(state)
    at = state.last_cutover_at if state.last_cutover_at is not None else 0.0
    trigger = state.last_cutover.trigger if state.last_cutover else ""
    return RecordOutcomeInput(
        f"{workflow.info().workflow_id}:{state.first_run_id}:cutover:{state.cutovers}",
        _instance(state), "cutover", at, reason, score, probability,
        policy_decided=by_policy, trigger=trigger)


def refused_record(state: ProtectionState, at: float, reason: str) -> RecordOutcomeInput:
    """The record of a cutover that was attempted and changed nothing; the serving node
    (still the primary) is probed over the horizon."""
    score, probability = _risk(state)
    trigger = state.last_cutover.trigger if state.last_cutover else ""
    return RecordOutcomeInput(
        f"{workflow.info().workflow_id}:refused:{int(at)}", _instance(state), "refused", at,
        reason, score, probability,
        probe_node=state.serving_node or state.spec.instance_id, trigger=trigger)


def rejoined_evidence(state: ProtectionState, former: str, at: float) -> OutcomeEvidence:
    """The former primary rejoined as the shadow: healthy now, and watched from now on."""
    return OutcomeEvidence(_instance(state), "healthy", at, "recovery",
                           f"{former} rejoined as the shadow", probe_node=former)


def retired_evidence(state: ProtectionState, former: str, at: float, facts: NodeFacts | None,
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
    return OutcomeEvidence(_instance(state), status, at, "recovery", f"{detail}; retired",
                           final=True)


async def record_outcome(record: RecordOutcomeInput) -> None:
    """Store a cutover, refusal or near miss (idempotent by ``record.record_id``)."""
    try:
        await workflow.execute_activity_method(
            OutcomeActivities.record_outcome, record, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_RETRY, summary=f"record the {record.kind} for the feedback loop")
    except ActivityError as err:
        workflow.logger.warning("Outcome record %s not stored: %s", record.record_id,
                                err.cause or err)


async def report_outcome_evidence(evidence: OutcomeEvidence) -> None:
    """Attach what the caller knows about an instance's health to its open records."""
    try:
        await workflow.execute_activity_method(
            OutcomeActivities.report_outcome_evidence, evidence,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=_RETRY,
            summary=f"report {evidence.status} evidence for the feedback loop")
    except ActivityError as err:
        workflow.logger.warning("Outcome evidence for %s not stored: %s",
                                evidence.instance.instance_id, err.cause or err)
