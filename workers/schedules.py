"""Temporal Schedules of the feedback loop, created idempotently when a worker starts.

- ``<prefix>-retrain`` every 24 hours: ``ModelRetrainingWorkflow``;
- ``<prefix>-observe-outcomes``, only when ``observe_every`` is set: ``ObserveOutcomesWorkflow``
  for fleets without a fleet watcher. The watcher probes open outcome records itself every 5
  minutes inside its long-running activity, at no Temporal cost, whereas this schedule costs
  about 5 actions per run (60 per hour at a 5-minute interval, more than the whole watcher),
  which would break the ≤ 12 actions per protected instance-hour budget of small fleets.

A schedule that already exists is left as it is: an operator may have paused it, changed its
interval or triggered it from the Web UI or ``temporal schedule``, and a restarting worker
must not undo that. Both use the overlap policy SKIP, so a slow run is never doubled up.
The daily retraining costs a handful of actions a day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from contracts.retraining import RetrainingConfig, RetrainingInput
from workflows.retraining import ModelRetrainingWorkflow, ObserveOutcomesWorkflow

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Ids, intervals and inputs of the feedback-loop schedules."""

    prefix: str = "shadowshift"
    """Schedule ids start with this (one set per task queue when several share a namespace)."""
    retrain_every: timedelta = timedelta(hours=24)
    """Interval between retraining runs."""
    observe_every: timedelta | None = None
    """Interval of the outcome-probe schedule; None = no schedule (the fleet watcher probes)."""
    retraining: RetrainingConfig = field(default_factory=RetrainingConfig)
    """What each retraining run trains on and how it decides."""

    @property
    def retrain_id(self) -> str:
        """Schedule id of the retraining workflow."""
        return f"{self.prefix}-retrain"

    @property
    def observe_id(self) -> str:
        """Schedule id of the outcome observer."""
        return f"{self.prefix}-observe-outcomes"


def retrain_schedule(config: ScheduleConfig, task_queue: str) -> Schedule:
    """The retraining schedule as it should be."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ModelRetrainingWorkflow.run, RetrainingInput(config.retraining),
            id=config.retrain_id, task_queue=task_queue,
            execution_timeout=timedelta(hours=2),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=config.retrain_every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def observe_schedule(config: ScheduleConfig, task_queue: str) -> Schedule:
    """The outcome observer's schedule as it should be (``observe_every`` must be set)."""
    assert config.observe_every is not None
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ObserveOutcomesWorkflow.run, id=config.observe_id, task_queue=task_queue,
            execution_timeout=timedelta(minutes=15),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=config.observe_every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, task_queue: str,
                           config: ScheduleConfig | None = None) -> dict[str, bool]:
    """Create the schedules unless they exist; returns schedule id → created now."""
    config = config or ScheduleConfig()
    created: dict[str, bool] = {}
    wanted = [(config.retrain_id, retrain_schedule(config, task_queue))]
    if config.observe_every is not None:
        wanted.append((config.observe_id, observe_schedule(config, task_queue)))
    for schedule_id, schedule in wanted:
        try:
            await client.create_schedule(schedule_id, schedule)
            created[schedule_id] = True
            log.info("Schedule %s created.", schedule_id)
        except ScheduleAlreadyRunningError:
            created[schedule_id] = False
            log.info("Schedule %s exists; left as it is.", schedule_id)
    return created
