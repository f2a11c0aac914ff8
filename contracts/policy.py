"""The decision policy: one type, one set of defaults, for the spec, the watcher and the workflow.

- :class:`Policy` — what one protection may do on its own (threshold, hysteresis, cooldown,
  advisory mode, readiness profile, automatic failover). It is part of the protection spec;
  ``set_policy`` changes it through :class:`PolicyChange`.
- :class:`FleetBudget` — what the whole fleet may do at once (migrations in flight and per
  hour, maintenance windows, a fleet-wide advisory switch); the fleet watcher's input.
- :class:`PolicyState` — the watcher's memory of both (streaks, budget slots), carried across
  its runs.

Who decides what, on which clock:

- the fleet watcher runs :func:`models.policy.decide` on each reading: hysteresis and the
  fleet budget, on the watcher's clock (both are about readings, which carry that clock);
- the protection workflow owns the **cooldown**, on its own clock (``workflow.now()``): it
  refuses a cutover within ``cooldown_s`` of the last one and says how long is left, and the
  watcher stays quiet about that instance for that long;
- the severity of an external event is turned into risk by
  :func:`models.policy.event_risk`, not by the workflow.

Validation is explicit (:func:`validate_policy`), never in ``__post_init__``: these types are
decoded from workflow histories, where a stricter rule must not break a replay.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

THRESHOLD = 60.0
"""Default readiness threshold, 0..100."""
CONSECUTIVE_READINGS = 3
"""Default hysteresis: high readings in a row before migrating."""
COOLDOWN_S = 3600.0
"""Default minimum time between two automatic cutovers of one instance."""
FAILOVER_AFTER_S = 10.0
"""Default time a serving node may be down before it is failed over: longer than a
PostgreSQL restart or a stall in a busy checkpoint (a few seconds), short next to Patroni's
30-s leader TTL because the probe is direct, not through a consensus store."""
RESHADOW_AFTER_S = 300.0
"""Default time a shadow may be unreachable and not streaming before it is lost for good
and made anew on a spare host: long next to a reboot or a PostgreSQL restart (a re-shadow is
a full copy), short next to the hours a dead host takes to be replaced by hand."""
PROFILES = ("default", "spec")
"""Readiness profiles (``models.readiness``)."""


class PolicyError(ValueError):
    """A policy is inconsistent; the message names the field (``policy.threshold ...``)."""


@dataclass
class Policy:
    """When one protection may act on its own."""

    threshold: float = THRESHOLD
    """Readiness score (0..100) at or above which a reading counts as high."""
    consecutive_readings: int = CONSECUTIVE_READINGS
    """High readings in a row before migrating (hysteresis), 1..100."""
    cooldown_s: float = COOLDOWN_S
    """Minimum time between two automatic cutovers of this instance, 0..7 days (measured by
    the protection workflow, on its clock)."""
    advisory: bool = False
    """Recommend only: never cut over automatically."""
    profile: str = "default"
    """Readiness profile: ``default`` (monotone) or ``spec`` (the specification's formula)."""
    failover_after_s: float = FAILOVER_AFTER_S
    """A serving node down this long is failed over to the shadow (an emergency cutover);
    0 turns automatic failover off. 0 or 0.5..3600: values under a few seconds suit the
    hosts platform, whose detector needs two vantage points to agree (one probe's blip
    cannot fail a primary over there); a single-probe platform (local, aws) wants more."""
    reshadow_after_s: float = RESHADOW_AFTER_S
    """A shadow neither reachable from the control worker nor streaming to its primary this
    long is lost for good: on a platform that can (hosts), it is made anew on the first
    spare host the spec names (``hosts.spares``), or the protection is ``degraded`` until
    it returns. 0 never; else 10..86400."""


@dataclass
class PolicyChange:
    """What ``set_policy`` sends: the fields given replace the policy's, the others stay (so
    ``{"threshold": 70}`` cannot silently turn ``advisory`` off)."""

    threshold: float | None = None
    consecutive_readings: int | None = None
    cooldown_s: float | None = None
    advisory: bool | None = None
    profile: str | None = None
    failover_after_s: float | None = None
    reshadow_after_s: float | None = None

    def applied_to(self, policy: Policy) -> Policy:
        """``policy`` with this change's given fields."""
        return replace(policy, **{k: v for k, v in asdict(self).items() if v is not None})


def validate_policy(policy: Policy, prefix: str = "policy.") -> Policy:
    """Return ``policy`` if it is consistent, else raise :class:`PolicyError` naming the field."""
    def number(name: str) -> float:
        value = getattr(policy, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise PolicyError(f"{prefix}{name} {value!r} is not a finite number")
        return float(value)

    if not 0 <= number("threshold") <= 100:
        raise PolicyError(f"{prefix}threshold {policy.threshold} is outside 0..100")
    readings = policy.consecutive_readings
    if isinstance(readings, bool) or not isinstance(readings, int) or not 1 <= readings <= 100:
        raise PolicyError(f"{prefix}consecutive_readings {readings!r} is outside 1..100")
    if not 0 <= number("cooldown_s") <= 7 * 86400:
        raise PolicyError(f"{prefix}cooldown_s {policy.cooldown_s} is outside 0..604800")
    if not isinstance(policy.advisory, bool):
        raise PolicyError(f"{prefix}advisory {policy.advisory!r}: use true or false")
    if policy.profile not in PROFILES:
        raise PolicyError(f"{prefix}profile {policy.profile!r}: allowed values are "
                          f"{', '.join(PROFILES)}")
    after = number("failover_after_s")
    if after != 0 and not 0.5 <= after <= 3600:
        raise PolicyError(f"{prefix}failover_after_s {policy.failover_after_s} is outside "
                          "0.5..3600 (0 turns automatic failover off)")
    reshadow = number("reshadow_after_s")
    if reshadow != 0 and not 10 <= reshadow <= 86400:
        raise PolicyError(f"{prefix}reshadow_after_s {policy.reshadow_after_s} is outside "
                          "10..86400 (0: a lost shadow is never made anew elsewhere)")
    return policy


@dataclass
class MaintenanceWindow:
    """A period in which no migration starts (planned work makes metrics look bad)."""

    start: float
    """Epoch seconds, inclusive."""
    end: float
    """Epoch seconds, exclusive."""
    instance_id: str | None = None
    """Instance it applies to; ``None`` = the whole fleet."""

    def covers(self, instance_id: str, now: float) -> bool:
        """Whether this window suppresses migrations of ``instance_id`` at ``now``."""
        applies = self.instance_id is None or self.instance_id == instance_id
        return applies and self.start <= now < self.end


@dataclass
class FleetBudget:
    """What the whole fleet may do at once (the fleet watcher's share of the policy)."""

    max_concurrent: int = 2
    """Migrations in flight at once. A slot is freed when the cutover finishes or is
    refused, or after ``migration_duration_s`` if the watcher never learns."""
    max_per_hour: int = 4
    """Migrations started in any 3,600 s."""
    migration_duration_s: float = 900.0
    """Longest a migration holds its slot without news of its end."""
    maintenance_windows: list[MaintenanceWindow] = field(default_factory=list)
    """Periods without migrations."""
    advisory: bool = False
    """Fleet-wide advisory mode: recommend only, for every protection (automatic failover
    included)."""


def validate_budget(budget: FleetBudget) -> FleetBudget:
    """Return ``budget`` if it is consistent, else raise :class:`PolicyError`."""
    for name in ("max_concurrent", "max_per_hour"):
        value = getattr(budget, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError(f"{name} must be an integer >= 0, not {value!r}")
    if not budget.migration_duration_s >= 0:
        raise PolicyError(f"migration_duration_s must be >= 0, not {budget.migration_duration_s}")
    for window in budget.maintenance_windows:
        if not window.start < window.end:
            raise PolicyError(f"maintenance window {window} ends before it starts")
    return budget


@dataclass
class InstancePolicyState:
    """What the policy remembers about one instance."""

    streak: int = 0
    """High readings in a row so far."""
    quiet_until: float | None = None
    """The protection refused a migration (cooldown, paused...): do not ask again before
    this time (watcher clock; the length came from the protection)."""


@dataclass
class PolicyState:
    """Everything the watcher's policy remembers; plain data, so it travels in heartbeats
    and across the watcher's runs."""

    instances: dict[str, InstancePolicyState] = field(default_factory=dict)
    """Per-instance memory."""
    in_flight: dict[str, float] = field(default_factory=dict)
    """Instance → start time of migrations still holding a concurrency slot."""
    started: list[float] = field(default_factory=list)
    """Start times of migrations in the last hour (for ``max_per_hour``)."""
