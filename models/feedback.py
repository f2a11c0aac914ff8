"""Outcome labels that a cutover cannot bias.

After a cutover the former primary has lost its load. Whatever was wearing it down because
of that load (a busy disk, a leak driven by requests, a connection storm) eases, and a probe
of its endpoint then reports a healthy, idle server. Counting that as "the model was wrong"
teaches the model that its own successful predictions were false alarms, and each retraining
would trust it less: a feedback loop that the cutover itself creates.

So the evidence about a record is sorted by whether it depends on the load (see
:data:`LOAD_INDEPENDENT`):

- *load-independent* evidence keeps its meaning after a cutover: hardware and platform events
  (status checks, scheduled maintenance, kernel or disk errors), the recovery path's verdict
  (the node rejoined healthy or was retired as failed), and probes of the resource the
  decision forecast to run out (disk space, memory of the leaking process, transaction-ID
  age), which keep filling or stop on their own;
- *load-dependent* evidence (endpoint probes, latency, error rates) is only trusted when the
  load stayed, i.e. for records without a cutover: near misses and refused cutovers.

:func:`label_outcome` applies the rule; a policy cutover with nothing but load-dependent
"healthy" evidence is ``censored``: neither a failure nor a false alarm, left out of training
labels and of the failure-history rate. Near misses (a score in the band below the threshold,
no cutover) are the untreated comparison group: their outcomes show what happens without a
migration, and keep calibration honest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Label = Literal["failed", "degraded", "healthy", "unknown", "censored"]

STATUS_ORDER = ("healthy", "degraded", "failed")
"""From best to worst."""

LOAD_INDEPENDENT = frozenset({
    "hardware", "platform_event", "status_check", "recovery", "resource_probe", "crash",
})
"""Evidence sources whose verdict does not depend on the node carrying traffic."""


@dataclass(frozen=True)
class Evidence:
    """One observation about a record's instance after the decision."""

    source: str
    """Where it came from: ``endpoint_probe``, ``recovery``, ``resource_probe``, …"""
    status: str
    """``healthy``, ``degraded`` or ``failed``."""
    at: float
    """Epoch seconds."""


def label_outcome(kind: str, policy_decided: bool, evidence: Iterable[Evidence],
                  at: float, horizon_s: float) -> Label:
    """The training label of a decision record from the evidence inside its horizon.

    Args:
        kind: ``cutover``, ``refused`` or ``near_miss``.
        policy_decided: the cutover was made by the policy on the model's score (an operator's
            manual cutover is judged like one: the load left either way).
        evidence: observations about the record's instance.
        at: decision time.
        horizon_s: the outcome window ``[at, at + horizon_s]``.

    Returns:
        The worst trusted status; ``unknown`` without any evidence; ``censored`` for a
        cutover whose only evidence cannot tell a prevented failure from a false alarm.
    """
    inside = [e for e in evidence if at <= e.at <= at + horizon_s and e.status in STATUS_ORDER]
    if not inside:
        return "unknown"
    moved_load = kind == "cutover"
    trusted = [e for e in inside if not moved_load or e.source in LOAD_INDEPENDENT
               or e.status != "healthy"]
    if not trusted:
        return "censored"
    worst = max(trusted, key=lambda e: STATUS_ORDER.index(e.status))
    status = worst.status
    return "failed" if status == "failed" else "degraded" if status == "degraded" else "healthy"


def training_label(label: Label) -> bool | None:
    """A label as a training target: failed or degraded → True, healthy → False, unknown or
    censored → ``None`` (not a training row)."""
    if label in ("failed", "degraded"):
        return True
    if label == "healthy":
        return False
    return None
