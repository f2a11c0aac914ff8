"""Retraining: train a challenger, evaluate it against the champion, promote or refuse.

One activity, ``retrain_challenger``, does all three on one worker: the candidate's files are
written to the training worker's state dir, so evaluating or promoting them on another worker
would not find them. Each step is idempotent, keyed by the candidate id (the retraining
workflow's id): a retry that lands on the same worker reuses the finished candidate and finds
its own promotion (or refusal) already recorded; a retry on another worker retrains from
scratch. The rule and the metric live in :mod:`models.retraining`; the atomic swap in
:mod:`models.registry`.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.outcomes_store import OutcomeStore
from contracts.errors import INVALID_REQUEST
from contracts.retraining import (
    Challenger,
    Evaluation,
    PromotionResult,
    RetrainDecision,
    RetrainingActivities,
    RetrainingConfig,
    TrainChallengerInput,
)
from models.feedback import Evidence, label_outcome, training_label
from models.predictor import ModelError, Predictor
from models.registry import MODEL_FILE, ModelRegistry
from models.retraining import METRIC, OutcomeExample, beats, score, train_candidate

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class PromoteInput:
    """The evaluation to decide on, and the rule's knobs."""

    evaluation: Evaluation
    """Both scores."""
    config: RetrainingConfig
    """Holds ``min_gain`` and ``min_heldout_positives``."""


class RegistryRetrainingActivities(RetrainingActivities):
    """Retraining over one model registry and one outcome store."""

    def __init__(self, registry: ModelRegistry, outcomes: OutcomeStore) -> None:
        self._registry = registry
        self._outcomes = outcomes

    def _candidate_dir(self, candidate_id: str) -> Path:
        return self._registry.root / "candidates" / _UNSAFE.sub("_", candidate_id)

    @activity.defn
    def retrain_challenger(self, request: TrainChallengerInput) -> RetrainDecision:
        """Train, evaluate and promote or refuse on this worker; each step heartbeats, and
        each is idempotent on a retry that lands here again."""
        challenger = self.train_challenger(request)
        evaluation = self.evaluate_challenger(challenger)
        promotion = self.promote_challenger(PromoteInput(evaluation, request.config))
        return RetrainDecision(challenger, evaluation, promotion)

    def train_challenger(self, request: TrainChallengerInput) -> Challenger:
        """Train on outcome history plus the base data; reuse a finished candidate."""
        folder = self._candidate_dir(request.candidate_id)
        done = folder / "challenger.json"
        if done.exists():
            return Challenger(**json.loads(done.read_text()))
        examples = outcome_examples(self._outcomes)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        started = time.monotonic()
        with heartbeating(f"training {request.candidate_id}", _beat_every()):
            candidate = train_candidate(request.config, examples, partial / MODEL_FILE)
        result = Challenger(
            candidate_id=request.candidate_id,
            model_sha256=Predictor.load(candidate.model_path).model_sha256,
            rows=candidate.rows, outcome_rows=candidate.outcome_rows,
            heldout_rows=candidate.heldout_rows, heldout_positives=candidate.heldout_positives,
            training_s=round(time.monotonic() - started, 3),
        )
        (partial / "challenger.json").write_text(json.dumps(asdict(result)) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        activity.logger.info("Challenger %s trained on %d rows (%d from outcomes) in %.1f s.",
                             request.candidate_id, result.rows, result.outcome_rows,
                             result.training_s)
        return result

    def evaluate_challenger(self, challenger: Challenger) -> Evaluation:
        """Score the current model and the challenger on the challenger's held-out rows."""
        folder = self._candidate_dir(challenger.candidate_id)
        try:
            pointer = self._registry.current()
            champion = Predictor.load(Path(pointer.model_path))
            candidate = Predictor.load(folder / MODEL_FILE)
            with np.load(folder / "heldout.npz") as heldout:
                features, labels = heldout["features"], heldout["labels"]
            with heartbeating(f"evaluating {challenger.candidate_id}", _beat_every()):
                champion_score = score(champion, features, labels)
                challenger_score = score(candidate, features, labels)
        except (ModelError, OSError, ValueError) as err:
            raise ApplicationError(f"cannot evaluate {challenger.candidate_id}: {err}",
                                   type=INVALID_REQUEST, non_retryable=True) from err
        return Evaluation(
            candidate_id=challenger.candidate_id, metric=METRIC,
            champion_version=pointer.version, champion_sha256=champion.model_sha256,
            champion_score=champion_score, challenger_score=challenger_score,
            heldout_rows=int(labels.size), heldout_positives=int(labels.sum()),
        )

    def promote_challenger(self, request: PromoteInput) -> PromotionResult:
        """Promote the challenger if it beats the champion; record the decision either way."""
        evaluation = request.evaluation
        for entry in self._registry.decisions():
            if entry.get("candidate_id") == evaluation.candidate_id:  # a retry: same answer
                return PromotionResult(entry["decision"] == "promoted",
                                       int(entry.get("version", self._registry.current().version)),
                                       str(entry.get("reason", "")))
        promote, reason = beats(evaluation.champion_score, evaluation.challenger_score,
                                evaluation.heldout_positives, request.config)
        if not promote:
            current = self._registry.current()
            self._registry.append_log({
                "decision": "refused", "candidate_id": evaluation.candidate_id,
                "version": current.version, "reason": reason, "at": time.time(),
                **{k: v for k, v in asdict(evaluation).items() if k != "candidate_id"},
            })
            activity.logger.info("Challenger %s refused: %s.", evaluation.candidate_id, reason)
            return PromotionResult(False, current.version, reason)
        try:
            pointer = self._registry.promote(
                self._candidate_dir(evaluation.candidate_id) / MODEL_FILE,
                candidate_id=evaluation.candidate_id, metric=evaluation.metric,
                champion_score=evaluation.champion_score,
                challenger_score=evaluation.challenger_score,
                expected_version=evaluation.champion_version, reason=reason,
            )
        except ModelError as err:
            raise ApplicationError(str(err), type=INVALID_REQUEST, non_retryable=True) from err
        activity.logger.info("Challenger %s promoted to %s: %s.", evaluation.candidate_id,
                             pointer.label, reason)
        return PromotionResult(True, pointer.version, reason)


def outcome_examples(store: OutcomeStore) -> list[OutcomeExample]:
    """Training rows from the resolved records that have a window, labelled from evidence a
    cutover cannot bias (:func:`models.feedback.label_outcome`): after a cutover the former
    primary lost its load, so an endpoint probe's "healthy" says nothing and such a record is
    left out (censored), while the recovery path's verdict, platform events and probes of the
    forecast resource still count. The store's own resolution (the worst status seen) is not
    used: it would teach the model that its prevented failures were false alarms."""
    evidence = {h.record_id: h for h in store.history()}
    examples = []
    for record in store.all():
        seen = evidence.get(record.record_id)
        if not record.window or seen is None or record.outcome is None:
            continue  # no window to learn from, or still open
        label = training_label(label_outcome(
            record.kind, record.policy_decided,
            [Evidence(source, status, at) for source, status, at in seen.observations],
            record.at, record.horizon_s))
        if label is None:
            continue  # unknown or censored: neither a failure nor a false alarm
        examples.append(OutcomeExample(record.at, list(record.window["timestamps"]),
                                       dict(record.window["values"]), label))
    return examples


def _beat_every() -> float:
    """A third of the activity's heartbeat timeout (10 s without one), so one late beat is
    not taken for a dead worker."""
    timeout = activity.info().heartbeat_timeout
    return min(10.0, timeout.total_seconds() / 3) if timeout else 10.0
