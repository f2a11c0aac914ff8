"""The fleet watcher's contract: its input (how it samples and decides, and its memory across
runs), its result, and its one activity."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity

from contracts.policy import FleetBudget, PolicyState

WATCHER_ID = "shadowshift-fleet-watcher"


def watcher_id(task_queue: str) -> str:
    """The watcher's workflow id for ``task_queue``.

    Per queue, not per namespace: a watcher joined by id from another queue would have its
    activity polled by nobody, and two watchers on one namespace must not signal the same
    protections.
    """
    return f"{WATCHER_ID}:{task_queue}"


@dataclass
class ShadowBudget:
    """The fleet's shadow budget and the tier-3 trigger (``models.shadow_budget``)."""

    max_shadows: int = 50
    """Shadows in the fleet at once (standing and risk-triggered)."""
    max_provisioning: int = 2
    """Shadows being provisioned at once (each is a full copy of its primary)."""
    max_per_hour: int = 10
    """Shadows provisioned in any 3,600 s."""
    provisioning_s: float = 900.0
    """How long a provisioning holds a concurrency slot."""
    tier3_threshold: float = 35.0
    """A tier-3 instance gets a shadow at this score (below the cutover threshold, so the
    shadow is in sync before a cutover could be needed)."""
    tier3_readings: int = 2
    """High readings in a row before a tier-3 shadow is provisioned."""
    release_below: float = 20.0
    """A tier-3 shadow is released only while the score stays under this."""
    release_after_s: float = 3600.0
    """... for this long."""


@dataclass
class WatchFleetInput:
    """How the watcher samples and decides; ``policy_state`` carries memory across runs."""

    sample_interval_s: float = 15.0
    """Time between two samples of the fleet (a risk crossing reaches a protection within
    one interval)."""
    window_samples: int = 48
    """Samples kept per instance for the model's features."""
    discovery_interval_s: float = 30.0
    """How often the list of protections is refreshed."""
    max_duration_s: float = 3600.0
    """Return after this long so the watcher workflow can checkpoint."""
    budget: FleetBudget = field(default_factory=FleetBudget)
    """The fleet's share of the policy (migrations at once and per hour, maintenance
    windows, fleet-wide advisory mode); each protection's own policy is in its spec."""
    policy_state: PolicyState = field(default_factory=PolicyState)
    """Policy memory handed over from the previous run."""
    shadow_budget: ShadowBudget = field(default_factory=ShadowBudget)
    """Fleet shadow budget and the tier-3 trigger."""
    metrics_period_s: int = 60
    """Period of platforms whose metrics service publishes at a fixed period (CloudWatch: 60
    with detailed monitoring, 300 with basic); they are read once per period."""
    events_interval_s: float = 300.0
    """Time between two polls of the platforms' scheduled events (EC2 maintenance...)."""
    events_sent: list[str] = field(default_factory=list)
    """Scheduled events already signalled, handed over from the previous run."""
    last_sample_at: dict[str, float] = field(default_factory=dict)
    """Instance → timestamp of the last sample taken, handed over from the previous run, so
    a datapoint a metrics service still answers with is not read twice across runs."""


@dataclass
class WatchFleetResult:
    """What one run of the watcher did."""

    policy_state: PolicyState
    """Policy memory for the next run."""
    samples: int
    """Fleet samples taken."""
    signals_sent: int
    """Signals and updates sent to protections."""
    events_sent: list[str] = field(default_factory=list)
    """Scheduled events signalled so far, for the next run."""
    last_sample_at: dict[str, float] = field(default_factory=dict)
    """Timestamp of the last sample per instance, for the next run."""


class WatchActivities:
    """The fleet watcher."""

    @activity.defn
    async def watch_fleet(self, request: WatchFleetInput) -> WatchFleetResult:
        """Sample, score and decide for the whole fleet until ``max_duration_s``."""
        raise NotImplementedError
