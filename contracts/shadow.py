"""Shadow lifecycle contract: what the protection asks of a platform, and the activities
that ask it.

Every platform activity takes a :class:`PlatformRequest`: the protection spec plus the roles
as they are now (which node serves, where the original primary's data lives), so every
check and the shadow stack follow the roles across cutovers. ``infra.factory`` turns it
into the platform object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import activity

from contracts.agent_tasks import AgentTask
from contracts.spec import ProtectionSpec

SYNC_LAG_BOUND_BYTES = 16 * 2**20
"""Tier 1: largest replay lag at which a returning shadow is required again."""
TIER_LAG_BOUND_BYTES = {1: SYNC_LAG_BOUND_BYTES, 2: 16 * 2**20, 3: 64 * 2**20}
"""Largest replay lag at which a shadow counts as in sync; tier 1 must also be synchronous."""


@dataclass
class PlatformRequest:
    """One protected instance with its roles as they are now."""

    spec: ProtectionSpec
    """What is protected and how."""
    serving_node: str = ""
    """Node that is the primary now (empty: the original); a cutover swaps the roles."""
    original_home: str = ""
    """Where the original primary's data lives, for when it is the standby (empty: the
    platform's default)."""
    copy_alongside: bool = False
    """Provisioning only: the standby's host-local copy runs alongside this call (the
    platform asked for that with ``ProvisionResult.copy_alongside``), so it may wait for the
    standby to stream."""

    @property
    def instance_id(self) -> str:
        """The protected instance."""
        return self.spec.instance_id


@dataclass
class Capabilities:
    """What a platform can do beyond the contract's common core; the provisioning result
    carries them, so workflow code asks the platform instead of testing its name."""

    rejoin: bool = False
    """A former primary can rejoin as the shadow in place (rewound, not copied)."""
    unprotect_when_degraded: bool = False
    """``unprotect`` is safe while degraded: the stack never holds the serving primary."""
    sync_relax: bool = False
    """Tier 1's synchronous mode can be relaxed and restored (non-strict mode)."""
    agents: bool = False
    """Host-local work runs on node agents: provisioning, inspection and recovery hand the
    workflow :class:`~contracts.agent_tasks.AgentTask` s to route to the hosts' queues."""
    reshadow: bool = False
    """A shadow lost for good can be made anew on a spare host the spec names (``hosts``'
    ``spares``): the fleet watcher reports such a loss (``report_shadow_lost``)."""
    fence_lease_s: float = 0.0
    """An emergency cutover promotes no earlier than this long after it cut the former
    primary off: a live agent of that primary has fenced it by then (its lease ran out)."""


@dataclass
class ReplicationStatus:
    """How far a shadow is behind its primary."""

    state: str
    """``streaming``, ``catchup``, ``archive`` (tier 3), ``stopped`` or ``unknown``."""
    sync_state: str
    """``sync``, ``async``, ``potential`` or ``none``."""
    lag_bytes: int | None
    """WAL bytes the shadow has not replayed yet; ``None`` when unknown."""
    lag_seconds: float | None
    """Replay lag in seconds as the primary measures it; ``None`` when unknown."""
    replay_position: str | None
    """The shadow's last replayed position (platform-specific, e.g. an LSN)."""
    primary_position: str | None
    """The primary's current write position."""
    bytes_shipped: int | None = None
    """Replication bytes sent to the shadow since it was seeded."""
    degraded: bool = False
    """Tier 1 only: synchronous replication was relaxed because the shadow was lost."""
    reply_time: str | None = None
    """When the shadow last replied, as the primary recorded it (the shadow's own clock:
    compare it only with itself, to see whether it still changes)."""


@dataclass
class Health:
    """Result of a health probe of one node."""

    reachable: bool
    """The node answered."""
    writable: bool
    """The node would accept a write now."""
    detail: str = ""
    """Why not, when not."""
    in_recovery: bool | None = None
    """The node is a standby replaying its primary's changes; ``None`` when unreachable."""


@dataclass
class ProvisionResult:
    """What ``provision_shadow`` created."""

    shadow_node: str
    """Router name of the shadow."""
    outputs: dict[str, Any]
    """Stack outputs (port, data directory, seed seconds, tier)."""
    seconds: float
    """Wall time of the activity attempt that finished the job."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    """What the platform can do (kept by the protection)."""
    agent_task: AgentTask | None = None
    """Not finished: run this on its host, then call ``provision_shadow`` again."""
    copy_alongside: bool = False
    """Run :attr:`agent_task` and the next ``provision_shadow`` (with
    ``PlatformRequest.copy_alongside``) at the same time: the infrastructure is built while
    the copy runs."""


@dataclass
class WaitForSyncRequest:
    """How long and how closely to wait for a shadow to catch up."""

    instance: PlatformRequest
    """The shadow to watch."""
    max_lag_bytes: int | None = None
    """Override of the tier's lag bound."""
    poll_interval_s: float = 0.5
    """Time between checks."""
    restore_relaxed: bool = False
    """Tier 1: restore a synchronous mode the tier-1 supervisor relaxed, once the shadow
    streams within :data:`SYNC_LAG_BOUND_BYTES` (the supervisor judges ``protected``
    protections only; a ``degraded`` one waits here for its returning shadow)."""


@dataclass
class InspectRequest:
    """Which node of a protected pair to look at."""

    instance: PlatformRequest
    """The protected instance."""
    node: str
    """Node name (the original primary's instance id, or ``<id>-shadow``)."""


@dataclass
class NodeFacts:
    """What ``inspect_node`` found."""

    node: str
    """The node."""
    reachable: bool
    """Whether it answered."""
    home: str
    """Where its data lives ("" when it could not be learned)."""
    rewindable: bool | None
    """It could rejoin in place after a cutover (``None``: unknown, it did not answer)."""
    advice: str = ""
    """What to change, when it cannot."""
    agent_task: AgentTask | None = None
    """The facts live on the node's host: run this there; its answer replaces these facts."""


@dataclass
class RecoverRequest:
    """The former primary to recover, with the roles as they are after the cutover."""

    instance: PlatformRequest
    """The protected instance; ``serving_node`` is the new primary."""
    former: str
    """The former primary, to become the new shadow."""


HOST_TASK_PURPOSES = ("rejoin", "retire", "destroy")
"""What :meth:`ShadowActivities.host_tasks` plans for."""


@dataclass
class HostTasksRequest:
    """Which host-local work to plan, on a platform with agents."""

    instance: PlatformRequest
    """The protected instance, with the roles as they are now."""
    purpose: str
    """``rejoin`` (rewind ``node`` into the standby of the serving node), ``retire`` (remove
    the former primary ``node``'s server) or ``destroy`` (remove the standby ``node``'s
    server before unprotecting)."""
    node: str
    """The node concerned."""


class ShadowActivities:
    """Create, watch and remove shadows, and recover a former primary (every platform)."""

    @activity.defn
    def provision_shadow(self, request: PlatformRequest) -> ProvisionResult:
        """Create (or finish creating) the shadow: full copy, continuous sync, router entry at
        weight 0. Converges after a crash halfway; bad input fails non-retryably and leaves
        nothing behind."""
        raise NotImplementedError

    @activity.defn
    def wait_for_sync(self, request: WaitForSyncRequest) -> ReplicationStatus:
        """Heartbeat until the shadow's lag is inside its tier's bound; return the status."""
        raise NotImplementedError

    @activity.defn
    def destroy_shadow(self, request: PlatformRequest) -> bool:
        """Remove every trace of the shadow; ``False`` when there was none."""
        raise NotImplementedError

    @activity.defn
    def inspect_node(self, request: InspectRequest) -> NodeFacts:
        """Where a node's data lives and whether it could rejoin in place; changes nothing."""
        raise NotImplementedError

    @activity.defn
    def rejoin_former_primary(self, request: RecoverRequest) -> str:
        """Make the former primary the shadow of the node that replaced it, in place;
        returns what was done. Fails non-retryably when it must be retired instead."""
        raise NotImplementedError

    @activity.defn
    def host_tasks(self, request: HostTasksRequest) -> list[AgentTask]:
        """The agent tasks to run, in order, before the control-side activity of the same
        purpose (``rejoin_former_primary``, ``retire_former_primary``, ``destroy_shadow``);
        none on a platform without agents."""
        raise NotImplementedError

    @activity.defn
    def retire_former_primary(self, request: RecoverRequest) -> bool:
        """Remove the former primary's side (the standby of the new roles); ``False`` when
        nothing was left. The workflow then provisions a fresh shadow."""
        raise NotImplementedError
