"""The feedback loop's workflows, both started by Temporal Schedules (``workers/schedules.py``).

- ``ObserveOutcomesWorkflow`` (every few minutes): probe the instances of open outcome
  records, then resolve the records whose horizon has passed.
- ``ModelRetrainingWorkflow`` (daily): resolve outcomes, train a challenger on them plus the
  base data, evaluate champion and challenger on the same held-out rows, promote the
  challenger only if it wins by the rule in :mod:`models.retraining` — train, evaluate and
  promote in one activity on one worker, since the candidate's files are in its state dir.
  Workers sharing that state dir pick a promoted model up at their next scoring batch
  (``activities/scoring.py`` watches the version pointer).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from contracts.errors import NON_RETRYABLE_TYPES
from contracts.outcomes import OutcomeActivities, ResolveOutcomesInput
from contracts.retraining import (
    RetrainingActivities,
    RetrainingInput,
    RetrainingResult,
    TrainChallengerInput,
)

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


@workflow.defn
class ModelRetrainingWorkflow:
    """Train, compare, promote only a better model."""

    @workflow.run
    async def run(self, request: RetrainingInput) -> RetrainingResult:
        """Resolve outcomes → train → evaluate → promote or refuse."""
        info = workflow.info()
        candidate_id = f"{info.workflow_id}-{info.run_id[:8]}"
        heartbeat_timeout = timedelta(seconds=request.heartbeat_timeout_s)
        resolved = await workflow.execute_activity_method(
            OutcomeActivities.resolve_outcomes, ResolveOutcomesInput(workflow.now().timestamp()),
            start_to_close_timeout=timedelta(minutes=5), retry_policy=_RETRY,
            summary="resolve the outcomes whose horizon has passed",
        )
        decided = await workflow.execute_activity_method(
            RetrainingActivities.retrain_challenger,
            TrainChallengerInput(candidate_id, request.config),
            start_to_close_timeout=timedelta(hours=1, minutes=20),
            heartbeat_timeout=heartbeat_timeout, retry_policy=_RETRY,
            summary=f"train, evaluate and promote or refuse challenger {candidate_id}",
        )
        promotion = decided.promotion
        verdict = "Promoted" if promotion.promoted else "Kept the champion"
        workflow.logger.info("%s: %s.", verdict, promotion.reason)
        return RetrainingResult(candidate_id, resolved, decided.challenger, decided.evaluation,
                                promotion)


@workflow.defn
class ObserveOutcomesWorkflow:
    """Probe open records, resolve due ones."""

    @workflow.run
    async def run(self) -> dict[str, int]:
        """One round; returns observations and resolutions by status."""
        observed = await workflow.execute_activity_method(
            OutcomeActivities.observe_outcomes,
            start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=timedelta(minutes=1),
            retry_policy=_RETRY, summary="probe the instances of open outcome records",
        )
        resolved = await workflow.execute_activity_method(
            OutcomeActivities.resolve_outcomes, ResolveOutcomesInput(workflow.now().timestamp()),
            start_to_close_timeout=timedelta(minutes=5), retry_policy=_RETRY,
            summary="resolve the outcomes whose horizon has passed",
        )
        return {**{f"observed_{k}": v for k, v in observed.statuses.items()},
                **{f"resolved_{k}": v for k, v in resolved.items()}}
