"""Shadow Instance Manager and Data Synchronization activities, on every platform.

All are synchronous (Pulumi and the database drivers block) and run on the worker's thread
pool. Long ones heartbeat; ``wait_for_sync`` resumes from its last heartbeat after a worker
crash. Each goes through the platform contract (``infra.platform``), so nothing here knows
which platform it drives.

Recovery of a former primary after a cutover:

- ``inspect_node``: where a node's data lives and whether it could rejoin in place;
  read-only, with advice when it could not.
- ``rejoin_former_primary``: make the former primary the standby of the new primary, in
  place, and record the roles in the stack. Refuses, non-retryably, a former primary that
  must be retired instead (data gone or damaged, cannot be rewound).
- ``retire_former_primary``: record the roles, then remove the former primary's side; the
  workflow then provisions a fresh shadow with the ordinary ``provision_shadow``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import translated_errors
from activities.heartbeat import heartbeat_callback, heartbeating
from activities.watching.sync import restorable
from contracts.agent_tasks import AgentTask
from contracts.errors import INVALID_REQUEST
from contracts.shadow import (
    HOST_TASK_PURPOSES,
    TIER_LAG_BOUND_BYTES,
    HostTasksRequest,
    InspectRequest,
    NodeFacts,
    PlatformRequest,
    ProvisionResult,
    RecoverRequest,
    ReplicationStatus,
    ShadowActivities,
    WaitForSyncRequest,
)
from infra.factory import Platforms
from infra.observability import observe_replication
from infra.platform import Platform

HEARTBEAT_EVERY_S = 5.0
"""Beat interval of the long activities that report no progress of their own (a starved
Pulumi CLI prints nothing; a rewind is silent)."""


class PlatformShadowActivities(ShadowActivities):
    """The shadow activities, through the platform of each request."""

    def __init__(self, platforms: Platforms) -> None:
        self._platforms = platforms

    @contextmanager
    def _platform(self, request: PlatformRequest) -> Iterator[Platform]:
        """The request's platform, its errors translated, its sessions closed after."""
        with translated_errors():
            platform = self._platforms.platform_for(request)
            try:
                yield platform
            finally:
                platform.close()

    @activity.defn
    def provision_shadow(self, request: PlatformRequest) -> ProvisionResult:
        """Create (or finish creating) the shadow; heartbeats carry Pulumi's progress."""
        started = time.monotonic()
        # Pulumi runs at a low CPU share and prints nothing while it waits on a busy machine:
        # a steady beat keeps a slow provisioning from reading as a dead worker.
        with self._platform(request) as platform, heartbeating("provisioning the shadow",
                                                               every_s=HEARTBEAT_EVERY_S):
            info = platform.provision_shadow(heartbeat_callback())
        return ProvisionResult(shadow_node=info.shadow_node, outputs=dict(info.outputs),
                               seconds=round(time.monotonic() - started, 3),
                               capabilities=platform.capabilities, agent_task=info.agent_task,
                               copy_alongside=info.copy_alongside)

    @activity.defn
    def wait_for_sync(self, request: WaitForSyncRequest) -> ReplicationStatus:
        """Heartbeat until the shadow's lag is inside its tier's bound, then return the status.

        The activity's timeouts bound the wait; a retry resumes counting from the heartbeat
        details (checks made so far), so the operator sees one continuous wait.
        """
        details = activity.info().heartbeat_details
        checks = int(details[0]) if details else 0
        tier = request.instance.spec.tier
        bound = request.max_lag_bytes
        if bound is None:
            bound = TIER_LAG_BOUND_BYTES[tier]
        with self._platform(request.instance) as platform:
            while True:
                status = platform.replication_status()
                observe_replication(request.instance.instance_id, status.lag_bytes,
                                    status.lag_seconds)
                checks += 1
                activity.heartbeat(checks, status.state, status.lag_bytes)
                if in_sync(status, tier, bound):
                    return status
                if request.restore_relaxed and tier == 1 and restorable(status) \
                        and platform.relaxed_by_supervisor():
                    platform.restore_sync()
                    continue
                time.sleep(request.poll_interval_s)

    @activity.defn
    def destroy_shadow(self, request: PlatformRequest) -> bool:
        """Remove processes, slot, data directory and router entry; ``False`` if none."""
        with self._platform(request) as platform, heartbeating("removing the shadow",
                                                               every_s=HEARTBEAT_EVERY_S):
            return platform.destroy_shadow(heartbeat_callback())

    @activity.defn
    def inspect_node(self, request: InspectRequest) -> NodeFacts:
        """Data directory and rejoin readiness of ``request.node``; changes nothing."""
        with self._platform(request.instance) as platform:
            return platform.inspect_node(request.node)

    @activity.defn
    def rejoin_former_primary(self, request: RecoverRequest) -> str:
        """Rejoin the former primary as the shadow, in place; returns what was done.

        Idempotent: a former primary that already streams from the new primary is only
        recorded. Fails ``InvalidRequest`` (not retried) when it must be retired instead.
        """
        with self._platform(request.instance) as platform, heartbeating(
                f"rejoining {request.former}", HEARTBEAT_EVERY_S):
            done = platform.rejoin(request.former)
        activity.logger.info("%s rejoined as the shadow of %s: %s.", request.former,
                             request.instance.serving_node, done)
        return done

    @activity.defn
    def host_tasks(self, request: HostTasksRequest) -> list[AgentTask]:
        """The agent tasks the platform wants run before the step of ``request.purpose``."""
        if request.purpose not in HOST_TASK_PURPOSES:
            raise ApplicationError(f"purpose {request.purpose!r} is not one of "
                                   f"{HOST_TASK_PURPOSES}", type=INVALID_REQUEST,
                                   non_retryable=True)
        with self._platform(request.instance) as platform:
            return platform.host_tasks(request.purpose, request.node)

    @activity.defn
    def retire_former_primary(self, request: RecoverRequest) -> bool:
        """Record the roles, then remove the former primary's side; ``False`` when there was
        nothing left (a retry after the removal finished)."""
        details = activity.info().heartbeat_details
        if details and details[0] == "retired":
            return False
        with self._platform(request.instance) as platform, heartbeating(
                f"retiring {request.former}", HEARTBEAT_EVERY_S):
            existed = platform.retire(request.former)
        activity.heartbeat("retired")
        activity.logger.warning("%s retired; a fresh shadow follows.", request.former)
        return existed


def in_sync(status: ReplicationStatus, tier: int, bound: int) -> bool:
    """Whether ``status`` is inside tier ``tier``'s bound (tier 1 must also be synchronous)."""
    if status.lag_bytes is None:
        return False
    if tier == 1:
        return status.sync_state == "sync" and status.lag_bytes <= bound
    if tier == 2:
        return status.state == "streaming" and status.lag_bytes <= bound
    return status.lag_bytes <= bound
