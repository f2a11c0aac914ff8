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

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.errors import NON_RETRYABLE_TYPES
    from activities.outcomes import ObserveOutcomesResult, ResolveOutcomesInput
    from activities.retraining import (
        Challenger,
        Evaluation,
        PromoteInput,
        PromotionResult,
        RetrainDecision,
        TrainChallengerInput,
    )
    from models.retraining import RetrainingConfig

ONE_ACTIVITY_PATCH_ID = "retrain-in-one-activity"
"""``workflow.patched`` id of train + evaluate + promote as one activity."""

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


@dataclass
class RetrainingInput:
    """One retraining run."""

    config: RetrainingConfig = field(default_factory=RetrainingConfig)
    """Data and promotion rule."""
    heartbeat_timeout_s: float = 60.0
    """Training and evaluation beat from a thread (a third of this apart): a lost worker is
    noticed within this long and the step retried on another (a finished candidate is reused,
    an unfinished one retrained)."""


@dataclass
class RetrainingResult:
    """What the run did, with both scores."""

    candidate_id: str
    """Names the challenger's files and its line in ``promotions.jsonl``."""
    outcomes_resolved: dict[str, int]
    """Records resolved at the start of the run, by outcome."""
    challenger: Challenger
    """Training summary."""
    evaluation: Evaluation
    """Champion and challenger scores."""
    promotion: PromotionResult
    """Promoted or refused, and why."""


@workflow.defn
class ModelRetrainingWorkflow:
    """Train, compare, promote only a better model."""

    @workflow.run
    async def run(self, request: RetrainingInput) -> RetrainingResult:
        """Resolve outcomes → train → evaluate → promote or refuse."""
        info = workflow.info()
        candidate_id = f"{info.workflow_id}-{info.run_id[:8]}"
        heartbeat_timeout = timedelta(seconds=request.heartbeat_timeout_s)
        resolved: dict[str, int] = await workflow.execute_activity(
            "resolve_outcomes", ResolveOutcomesInput(workflow.now().timestamp()),
            result_type=dict[str, int], start_to_close_timeout=timedelta(minutes=5),
            retry_policy=_RETRY,
        )
        if workflow.patched(ONE_ACTIVITY_PATCH_ID):
            decided: RetrainDecision = await workflow.execute_activity(
                "retrain_challenger", TrainChallengerInput(candidate_id, request.config),
                result_type=RetrainDecision, start_to_close_timeout=timedelta(hours=1, minutes=20),
                heartbeat_timeout=heartbeat_timeout, retry_policy=_RETRY,
            )
            challenger, evaluation, promotion = (decided.challenger, decided.evaluation,
                                                 decided.promotion)
        else:  # runs started before: three activities, possibly on different workers
            challenger, evaluation, promotion = await self._three_steps(
                candidate_id, request, heartbeat_timeout)
        verdict = "Promoted" if promotion.promoted else "Kept the champion"
        workflow.logger.info("%s: %s.", verdict, promotion.reason)
        return RetrainingResult(candidate_id, resolved, challenger, evaluation, promotion)

    @staticmethod
    async def _three_steps(candidate_id: str, request: RetrainingInput,
                           heartbeat_timeout: timedelta,
                           ) -> tuple[Challenger, Evaluation, PromotionResult]:
        challenger: Challenger = await workflow.execute_activity(
            "train_challenger", TrainChallengerInput(candidate_id, request.config),
            result_type=Challenger, start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=heartbeat_timeout, retry_policy=_RETRY,
        )
        evaluation: Evaluation = await workflow.execute_activity(
            "evaluate_challenger", challenger, result_type=Evaluation,
            start_to_close_timeout=timedelta(minutes=15), heartbeat_timeout=heartbeat_timeout,
            retry_policy=_RETRY,
        )
        promotion: PromotionResult = await workflow.execute_activity(
            "promote_challenger", PromoteInput(evaluation, request.config),
            result_type=PromotionResult, start_to_close_timeout=timedelta(minutes=5),
            retry_policy=_RETRY,
        )
        return challenger, evaluation, promotion


@workflow.defn
class ObserveOutcomesWorkflow:
    """Probe open records, resolve due ones."""

    @workflow.run
    async def run(self) -> dict[str, int]:
        """One round; returns observations and resolutions by status."""
        observed: ObserveOutcomesResult = await workflow.execute_activity(
            "observe_outcomes", result_type=ObserveOutcomesResult,
            start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )
        resolved: dict[str, int] = await workflow.execute_activity(
            "resolve_outcomes", ResolveOutcomesInput(workflow.now().timestamp()),
            result_type=dict[str, int], start_to_close_timeout=timedelta(minutes=5),
            retry_policy=_RETRY,
        )
        return {**{f"observed_{k}": v for k, v in observed.statuses.items()},
                **{f"resolved_{k}": v for k, v in resolved.items()}}
