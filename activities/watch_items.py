"""What the fleet watcher keeps per watched protection (local or AWS), and when a new score
is worth a signal."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from activities.watch_aws import AwsTarget
from infra.local.metrics import LocalMetricsCollector
from infra.local.spec import LocalShadowSpec
from models.metrics import MetricSample
from models.policy import PolicyConfig

READINESS_STEP = 10.0
"""Points a score must move from the last reported value before it is reported again."""


@dataclass
class Watched:
    """One protection: where its samples come from, its window, and what was last reported."""

    workflow_id: str
    """The protection's workflow (signals go there)."""
    spec: LocalShadowSpec
    """Local protections: the spec (``None`` for AWS ones)."""
    port: int
    """Local protections: the port of the node sampled (0 for AWS ones)."""
    collector: LocalMetricsCollector
    """Local protections: the sampled node's collector (``None`` for AWS ones)."""
    samples: deque[MetricSample]
    """The model's window, oldest first."""
    profile: str
    """Readiness profile."""
    policy: PolicyConfig
    """The protection's policy."""
    last_reported: float | None = None
    """Score last signalled (NaN: "no score" was signalled; ``None``: nothing yet)."""
    last_decision: str = "hold"
    """Decision last signalled."""
    aws: AwsTarget | None = None
    """AWS protections: the instance read from CloudWatch."""

    @property
    def node(self) -> str:
        """The router node being sampled (after a cutover, the former shadow)."""
        return self.aws.node if self.aws is not None else self.collector.server_name


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
