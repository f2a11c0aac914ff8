"""The readiness score's "historical failure rate": per instance, shrunk towards its class.

The rate is the share of an instance's resolved decision records (cutovers, refusals, near
misses) whose outcome was a failure — a degradation counts ``degraded_weight`` of one — with
older records weighing less (half-life ``half_life_s``). Few records say little, so the
instance's rate is shrunk towards the rate of its *class* (instances of the same platform and
tier, say) with a Beta prior worth ``prior_strength`` records, and the class rate towards the
whole fleet's the same way, and the fleet's towards ``fleet_prior``::

    fleet    = (Σ w·f over all records    + m·fleet_prior) / (Σ w + m)
    class    = (Σ w·f over the class      + m·fleet)       / (Σ w + m)
    instance = (Σ w·f over the instance   + m·class)       / (Σ w + m)

(w: the record's time-decay weight, f: 1 failed, ``degraded_weight`` degraded, 0 healthy,
m: ``prior_strength``). An instance with no record gets its class's rate; a class with none,
the fleet's. Records whose outcome is ``unknown`` or ``censored`` (a cutover whose only
evidence depends on the load that left; :mod:`models.feedback`) count neither way.

Both readiness profiles take the rate as their history term (``spec``: times 15, ``default``:
times 10); see :mod:`models.readiness`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from models.feedback import Evidence, Label, label_outcome


@dataclass(frozen=True)
class OutcomeEvidence:
    """One resolved decision record, as the history term sees it."""

    instance_id: str
    """The instance."""
    at: float
    """Decision time, epoch seconds."""
    outcome: Label
    """Its label (:func:`models.feedback.label_outcome`)."""


@dataclass(frozen=True)
class HistoryConfig:
    """How the rate is estimated."""

    prior_strength: float = 8.0
    """The prior counts as this many records."""
    half_life_s: float = 90 * 86400.0
    """A record's weight halves every 90 days."""
    degraded_weight: float = 0.5
    """A degradation counts as half a failure."""
    fleet_prior: float = 0.05
    """Rate assumed for a fleet with no history at all."""


def _value(outcome: str, config: HistoryConfig) -> float | None:
    if outcome == "failed":
        return 1.0
    if outcome == "degraded":
        return config.degraded_weight
    if outcome == "healthy":
        return 0.0
    return None


def failure_rates(
    evidence: Iterable[OutcomeEvidence],
    now: float,
    classes: Mapping[str, str] | None = None,
    instances: Iterable[str] = (),
    config: HistoryConfig | None = None,
) -> dict[str, float]:
    """Historical failure rate (0..1) of every instance in ``evidence`` or ``instances``.

    Args:
        evidence: resolved records.
        now: the moment the rates are for (older records weigh less).
        classes: instance → class name (instances not listed share the class ``""``).
        instances: instances to rate even without any record.
        config: prior strength, half-life, weights.
    """
    config = config or HistoryConfig()
    classes = classes or {}
    m = config.prior_strength
    sums: dict[str, list[float]] = {}
    seen: set[str] = set(instances)
    for record in evidence:
        seen.add(record.instance_id)
        value = _value(record.outcome, config)
        if value is None:
            continue
        weight = 0.5 ** (max(now - record.at, 0.0) / config.half_life_s)
        pair = sums.setdefault(record.instance_id, [0.0, 0.0])
        pair[0] += weight * value
        pair[1] += weight
    fleet_sum = sum(p[0] for p in sums.values())  # instances without labels add nothing
    fleet_weight = sum(p[1] for p in sums.values())
    fleet = (fleet_sum + m * config.fleet_prior) / (fleet_weight + m)
    by_class: dict[str, list[float]] = {}
    for instance_id, (total, weight) in sums.items():
        pair = by_class.setdefault(classes.get(instance_id, ""), [0.0, 0.0])
        pair[0] += total
        pair[1] += weight
    class_rate = {name: (total + m * fleet) / (weight + m)
                  for name, (total, weight) in by_class.items()}
    out: dict[str, float] = {}
    for instance_id in seen:
        prior = class_rate.get(classes.get(instance_id, ""), fleet)
        total, weight = sums.get(instance_id, (0.0, 0.0))
        out[instance_id] = (total + m * prior) / (weight + m)
    return out


class RecordHistory(Protocol):
    """What :func:`rates_from_history` needs of a stored record (the outcome store's
    ``HistoryRecord`` has it)."""

    @property
    def instance_id(self) -> str:
        """The instance."""

    @property
    def kind(self) -> str:
        """``cutover``, ``refused`` or ``near_miss``."""

    @property
    def at(self) -> float:
        """Decision time."""

    @property
    def horizon_s(self) -> float:
        """Outcome window length."""

    @property
    def policy_decided(self) -> bool:
        """A cutover the policy made."""

    @property
    def observations(self) -> Sequence[tuple[str, str, float]]:
        """``(source, status, at)`` of each observation."""


def rates_from_history(records: Iterable[RecordHistory], now: float,
                       classes: Mapping[str, str] | None = None, instances: Iterable[str] = (),
                       config: HistoryConfig | None = None) -> dict[str, float]:
    """:func:`failure_rates` of stored records, each labelled by
    :func:`models.feedback.label_outcome` (records whose horizon is still open are left out)."""
    evidence = [
        OutcomeEvidence(r.instance_id, r.at, label_outcome(
            r.kind, r.policy_decided, [Evidence(s, st, t) for s, st, t in r.observations],
            r.at, r.horizon_s))
        for r in records if r.at + r.horizon_s <= now
    ]
    return failure_rates(evidence, now, classes, instances, config)
