"""What the fleet watcher keeps per watched protection, and when a new score is worth a
signal."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from contracts.policy import Policy
from contracts.shadow import PlatformRequest
from infra.platform import Located
from models.metrics import MetricSample

READINESS_STEP = 10.0
"""Points a score must move from the last reported value before it is reported again."""


@dataclass
class Target:
    """A protection as discovery found it."""

    workflow_id: str
    """The protection's workflow (messages go there)."""
    request: PlatformRequest
    """Its spec and roles, from its memo."""
    phase: str
    """Its phase (search attribute)."""
    tier: int
    """Its tier (search attribute; follows tier changes)."""

    @property
    def instance_id(self) -> str:
        """The protected instance."""
        return self.request.instance_id

    @property
    def policy(self) -> Policy:
        """Its policy (``set_policy`` rewrites the memo)."""
        return self.request.spec.policy


@dataclass
class Watched:
    """One protection: where its samples come from, its window, and what was last reported."""

    target: Target
    """The protection, as last discovered."""
    located: Located
    """The serving node sampled now."""
    samples: deque[MetricSample] = field(default_factory=deque)
    """The model's window, oldest first."""
    last_reported: float | None = None
    """Score last signalled (NaN: "no score" was signalled; ``None``: nothing yet)."""
    last_decision: str = "hold"
    """Decision last signalled."""

    @property
    def node(self) -> str:
        """The node being sampled (after a cutover, the former shadow)."""
        return self.located.node


def worth_reporting(last_reported: float | None, last_decision: str, threshold: float,
                    score: float, decision: str) -> bool:
    """Whether a protection needs to hear about ``score``: a new decision, a threshold
    crossing, a 10-point move from the last score reported, or a score appearing or vanishing
    (NaN = no score)."""
    if last_reported is None or decision != last_decision:
        return True
    known, was_known = score == score, last_reported == last_reported  # NaN != NaN
    if known != was_known:
        return True
    if not known:
        return False
    crossed = (score >= threshold) != (last_reported >= threshold)
    return crossed or abs(score - last_reported) >= READINESS_STEP
