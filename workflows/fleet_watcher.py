"""``FleetWatcherWorkflow``: keeps the fleet watcher activity running, forever.

One per task queue (workflow id :func:`watcher_id`), watching the protections that run on
that queue; every worker start makes sure it runs. The activity does the watching (see
``activities/watch.py`` for the cost reasoning); this workflow only restarts it after each
bounded run, hands the policy memory from one run to the next and continues as new before
its history grows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    # models.policy must be visible in the sandbox so nested dataclass hints resolve.
    import models.policy  # noqa: F401
    from activities.watch import WatchFleetInput, WatchFleetResult

WATCHER_ID = "shadowshift-fleet-watcher"


def watcher_id(task_queue: str) -> str:
    """The watcher's workflow id for ``task_queue``.

    Per queue, not per namespace: a watcher joined by id from another queue would have its
    activity polled by nobody, and two watchers on one namespace must not signal the same
    protections.
    """
    return f"{WATCHER_ID}:{task_queue}"


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
            result: WatchFleetResult = await workflow.execute_activity(
                "watch_fleet",
                request,
                result_type=WatchFleetResult,
                start_to_close_timeout=timedelta(seconds=request.max_duration_s)
                + timedelta(minutes=10),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
            request.policy_state = result.policy_state
            request.events_sent = result.events_sent  # EC2 events are signalled once
        workflow.continue_as_new(request)
