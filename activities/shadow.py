"""Shadow Instance Manager and Data Synchronization activities (local platform).

All are synchronous (Pulumi and psycopg block) and run on the worker's thread pool. Long
ones heartbeat; ``wait_for_sync`` resumes from its last heartbeat after a worker crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity

from activities.errors import translated_errors
from activities.heartbeat import heartbeat_callback, heartbeating
from activities.sync_supervisor import RELAX, RESTORE, SYNC_LAG_BOUND_BYTES, sync_step
from infra.factory import platform_for
from infra.platform import Platform, ReplicationStatus
from infra.pulumi_engine import StackDriver
from workers.observability import observe_replication

TIER_LAG_BOUND_BYTES = {1: SYNC_LAG_BOUND_BYTES, 2: 16 * 2**20, 3: 64 * 2**20}
"""Largest replay lag at which a shadow counts as in sync; tier 1 must also be synchronous."""


@dataclass
class ShadowRequest:
    """Which instance to shadow and how (the local platform's protection spec)."""

    instance_id: str
    """Protected instance; also its HAProxy service name."""
    primary_port: int
    """Port of the primary PostgreSQL on 127.0.0.1."""
    shadow_port: int
    """Port for the shadow PostgreSQL."""
    router_port: int
    """HAProxy frontend port of the service."""
    tier: int = 2
    """1 synchronous, 2 asynchronous streaming, 3 WAL archive shipping."""
    replication_user: str = "postgres"
    """Role the shadow replicates as."""
    compression: str = "lz4"
    """Compression of the initial full copy: lz4, gzip or none."""
    archive_interval_s: int = 10
    """Tier 3 shipping interval."""
    platform: str = "local"
    """Where the instance runs; picks the platform object (see ``infra.factory``)."""
    platform_spec: dict[str, Any] = field(default_factory=dict)
    """Non-local platforms: their spec as plain data (e.g. the AWS spec's fields)."""
    serving_node: str = ""
    """Node that is the primary now (empty: the original); a cutover swaps the roles."""
    original_home: str = ""
    """Folder of the original primary's data directory, for when it is the standby."""


@dataclass
class ProvisionResult:
    """What ``provision_shadow`` created."""

    shadow_node: str
    """Router name of the shadow."""
    outputs: dict[str, Any]
    """Stack outputs (port, data directory, seed seconds, tier)."""
    seconds: float
    """Wall time of the activity attempt that finished the job."""


@dataclass
class WaitForSyncRequest:
    """How long and how closely to wait for a shadow to catch up."""

    shadow: ShadowRequest
    """The shadow to watch."""
    max_lag_bytes: int | None = None
    """Override of the tier's lag bound."""
    poll_interval_s: float = 0.5
    """Time between checks."""


@dataclass
class SuperviseSyncRequest:
    """Tier 1 supervision parameters (Patroni's non-strict synchronous mode, bounded)."""

    shadow: ShadowRequest
    """The tier-1 shadow to supervise."""
    degrade_after_s: float = 10.0
    """How long writes may wait for a lost shadow before synchronous replication is relaxed."""
    check_interval_s: float = 1.0
    """Time between checks."""
    max_duration_s: float = 3600.0
    """Return after this long without a change, so the caller can checkpoint."""


@dataclass
class SyncChange:
    """What ``supervise_sync`` did, if anything."""

    degraded: bool
    """Whether synchronous replication is relaxed now (RPO > 0 until restored)."""
    changed: bool
    """Whether this call changed it."""
    reason: str
    """One plain sentence for the operator."""


class ShadowActivities:
    """Activities that create, watch and remove shadows."""

    def __init__(self, driver: StackDriver, state_dir: Path) -> None:
        self._driver = driver
        self._state_dir = state_dir

    def platform(self, request: ShadowRequest) -> Platform:
        """The platform object for ``request`` (validates the request)."""
        return platform_for(request, self._driver, self._state_dir)

    @activity.defn
    def provision_shadow(self, request: ShadowRequest) -> ProvisionResult:
        """Create (or finish creating) the shadow; heartbeats carry Pulumi's progress."""
        started = time.monotonic()
        # Pulumi runs at a low CPU share and prints nothing while it waits on a busy machine:
        # a steady beat keeps a slow provisioning from reading as a dead worker.
        with translated_errors(), heartbeating("provisioning the shadow", every_s=5.0):
            info = self.platform(request).provision_shadow(heartbeat_callback())
        return ProvisionResult(
            shadow_node=info.shadow_node,
            outputs=dict(info.outputs),
            seconds=round(time.monotonic() - started, 3),
        )

    @activity.defn
    def wait_for_sync(self, request: WaitForSyncRequest) -> ReplicationStatus:
        """Heartbeat until the shadow's lag is inside its tier's bound, then return the status.

        The activity's timeouts bound the wait; a retry resumes counting from the heartbeat
        details (checks made so far), so the operator sees one continuous wait.
        """
        details = activity.info().heartbeat_details
        checks = int(details[0]) if details else 0
        bound = request.max_lag_bytes
        if bound is None:
            bound = TIER_LAG_BOUND_BYTES[request.shadow.tier]
        with translated_errors():
            platform = self.platform(request.shadow)
            while True:
                status = platform.replication_status()
                observe_replication(
                    request.shadow.instance_id, status.lag_bytes, status.lag_seconds
                )
                checks += 1
                activity.heartbeat(checks, status.state, status.lag_bytes)
                if _in_sync(status, request.shadow.tier, bound):
                    return status
                time.sleep(request.poll_interval_s)

    @activity.defn
    def replication_status(self, request: ShadowRequest) -> ReplicationStatus:
        """State, sync state, lag (bytes, seconds) and replay position of the shadow."""
        with translated_errors():
            status = self.platform(request).replication_status()
        observe_replication(request.instance_id, status.lag_bytes, status.lag_seconds)
        return status

    @activity.defn
    def supervise_sync(self, request: SuperviseSyncRequest) -> SyncChange:
        """Tier 1: keep writes available when the shadow is lost, and zero-loss when it is back.

        Synchronous replication blocks commits while no synchronous standby is connected. After
        ``degrade_after_s`` without a streaming shadow we relax it (commits stop waiting; the
        loss window is reported) and restore it once the shadow streams again with a small lag.
        Returns at the first change so its caller records it. The moment the shadow went
        missing travels in the heartbeat details, so a retry does not restart the clock. The
        fleet watcher applies the same rule (:func:`~activities.sync_supervisor.sync_step`) to
        every local tier-1 protection; this is for callers that want a dedicated supervisor.
        """
        details = activity.info().heartbeat_details
        lost_since: float | None = float(details[0]) if details and details[0] else None
        started = time.monotonic()
        with translated_errors():
            platform = self.platform(request.shadow)
            while time.monotonic() - started < request.max_duration_s:
                status = platform.replication_status()
                observe_replication(
                    request.shadow.instance_id, status.lag_bytes, status.lag_seconds
                )
                action, lost_since = sync_step(
                    status, lost_since, time.time(), request.degrade_after_s)
                if action == RESTORE:
                    platform.restore_sync()
                    activity.logger.info("Shadow is streaming again. Writes are synchronous.")
                    return SyncChange(False, True, "shadow streams again; sync restored")
                if action == RELAX:
                    platform.relax_sync()
                    activity.logger.warning(
                        "Shadow lost for %.1fs. Relaxing synchronous replication.",
                        time.time() - (lost_since or time.time()),
                    )
                    return SyncChange(True, True, "shadow lost; writes no longer wait for it")
                activity.heartbeat(lost_since or 0.0, status.state)
                time.sleep(request.check_interval_s)
            degraded = platform.replication_status().degraded
            return SyncChange(degraded, False, "no change")

    @activity.defn
    def destroy_shadow(self, request: ShadowRequest) -> bool:
        """Remove processes, slot, data directory and router entry; ``False`` if none."""
        with translated_errors(), heartbeating("removing the shadow", every_s=5.0):
            return self.platform(request).destroy_shadow(heartbeat_callback())


def _in_sync(status: ReplicationStatus, tier: int, bound: int) -> bool:
    if status.lag_bytes is None:
        return False
    if tier == 1:
        return status.sync_state == "sync" and status.lag_bytes <= bound
    if tier == 2:
        return status.state == "streaming" and status.lag_bytes <= bound
    return status.lag_bytes <= bound
