"""``FleetWatcherWorkflow``: keeps the fleet watcher activity running, forever.

One per task queue (workflow id :func:`watcher_id`), watching the protections that run on
that queue; every worker start makes sure it runs. The activity does the watching (see
``activities/watching/`` for the cost reasoning); this workflow only restarts it after each
bounded run, hands the policy memory from one run to the next and continues as new before
its history grows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from contracts.watch import WATCHER_ID, WatchActivities, WatchFleetInput, watcher_id

__all__ = ["HEARTBEAT_TIMEOUT", "WATCHER_ID", "FleetWatcherWorkflow", "watcher_id"]

HEARTBEAT_TIMEOUT = timedelta(minutes=2)
"""A lost worker is noticed within this long; the activity then resumes on another worker."""
RUNS_PER_HISTORY = 24


@workflow.defn
class FleetWatcherWorkflow:
    """Run ``watch_fleet`` back to back."""

    @workflow.run
    async def run(self, request: WatchFleetInput) -> None:
        """Loop over bounded watcher runs; continue as new every few runs."""
        for _ in range(RUNS_PER_HISTORY):
            result = await workflow.execute_activity_method(
                WatchActivities.watch_fleet,
                request,
                start_to_close_timeout=timedelta(seconds=request.max_duration_s)
                + timedelta(minutes=10),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
                summary=f"watch the fleet for {request.max_duration_s:.0f} s",
            )
            request.policy_state = result.policy_state
            request.events_sent = result.events_sent  # EC2 events are signalled once
            request.last_sample_at = result.last_sample_at  # a datapoint is read once
        workflow.continue_as_new(request)
