"""The feedback loop's retraining contract: configuration, results and activities.

``ModelRetrainingWorkflow`` resolves outcomes, then trains, evaluates and promotes a
challenger in one activity (the candidate's files are in one worker's state dir).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity


@dataclass
class RetrainingConfig:
    """What a retraining run trains on and how it decides (``models.retraining``)."""

    instances: int = 200
    """Synthetic base fleet size (the default model's; ``models.synthetic.FleetConfig``)."""
    days: float = 4.0
    """Length of each synthetic instance's history."""
    seed: int = 0
    """Synthetic fleet seed; keep it fixed so held-out rows stay unseen by every champion."""
    use_nab: bool = True
    """Mix in the real series of ``../shared/data`` (NAB and ASD) when present."""
    min_gain: float = 0.01
    """The challenger's average precision must beat the champion's by this much."""
    min_heldout_positives: int = 20
    """Fewer failures than this in the held-out rows: too little evidence, no promotion."""
    label_permutation_seed: int | None = None
    """A control, not a setting for production: train on labels permuted with this seed
    (held-out labels stay true), which yields a model that should never be promoted."""
    num_threads: int = 2
    """LightGBM threads."""


@dataclass
class RetrainingInput:
    """One retraining run."""

    config: RetrainingConfig = field(default_factory=RetrainingConfig)
    """Data and promotion rule."""
    heartbeat_timeout_s: float = 60.0
    """Training and evaluation beat from a thread (a third of this apart): a lost worker is
    noticed within this long and the run retried on another."""


@dataclass
class TrainChallengerInput:
    """Which run this is and what to train on."""

    candidate_id: str
    """Unique per retraining run (the workflow id)."""
    config: RetrainingConfig = field(default_factory=RetrainingConfig)
    """Data and decision settings."""


@dataclass
class Challenger:
    """A trained challenger, ready to evaluate."""

    candidate_id: str
    """The run."""
    model_sha256: str
    """Digest of its model file."""
    rows: int
    """Training data rows, all splits."""
    outcome_rows: int
    """Rows from resolved outcome records."""
    heldout_rows: int
    """Held-out rows the comparison uses."""
    heldout_positives: int
    """Failures among them."""
    training_s: float
    """Wall time of training."""


@dataclass
class Evaluation:
    """Champion and challenger on the same held-out rows."""

    candidate_id: str
    """The challenger's run."""
    metric: str
    """The metric (``average_precision``)."""
    champion_version: int
    """Version of the model in force when evaluated."""
    champion_sha256: str
    """Its model digest."""
    champion_score: float
    """Its metric value."""
    challenger_score: float
    """The challenger's."""
    heldout_rows: int
    """Rows compared on."""
    heldout_positives: int
    """Failures among them."""


@dataclass
class PromotionResult:
    """What was decided."""

    promoted: bool
    """Whether the challenger is now the current model."""
    version: int
    """The version in force afterwards."""
    reason: str
    """One sentence with both scores."""


@dataclass
class RetrainDecision:
    """One retraining run's training, evaluation and decision."""

    challenger: Challenger
    """Training summary."""
    evaluation: Evaluation
    """Champion and challenger scores."""
    promotion: PromotionResult
    """Promoted or refused, and why."""


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


class RetrainingActivities:
    """Train, evaluate and promote a challenger, idempotent by candidate id."""

    @activity.defn
    def retrain_challenger(self, request: TrainChallengerInput) -> RetrainDecision:
        """Train a challenger, evaluate it against the champion on the same held-out rows,
        promote it only if it wins; one heartbeating activity on one worker."""
        raise NotImplementedError
