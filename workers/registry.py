"""What a ShadowShift worker runs: every workflow and activity, built from settings.

``workers.main`` and the tests both build workers from here, so a test worker registers
exactly what production does.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.cutover import CutoverActivities
from activities.failover_monitor import FailoverMonitor
from activities.outcomes import OutcomeActivities, OutcomeRecorder
from activities.outcomes_store import OutcomeStore
from activities.recovery import RecoveryActivities
from activities.retraining import RetrainingActivities
from activities.scoring import ScoringActivities
from activities.shadow import ShadowActivities
from activities.shadow_planner import ShadowPlanner
from activities.smoke import SmokeActivities
from activities.sync_supervisor import SyncSupervisor
from activities.watch import WatchActivities
from infra.pulumi_engine import PulumiConfig, StackDriver
from models.registry import ModelRegistry
from workers import observability
from workers.settings import Settings
from workflows.cutover import CutoverWorkflow
from workflows.fleet_watcher import FleetWatcherWorkflow
from workflows.protection import InstanceProtectionWorkflow
from workflows.retraining import ModelRetrainingWorkflow, ObserveOutcomesWorkflow
from workflows.smoke import SmokeWorkflow

WORKFLOWS: Sequence[type] = (
    SmokeWorkflow,
    InstanceProtectionWorkflow,
    FleetWatcherWorkflow,
    CutoverWorkflow,
    ModelRetrainingWorkflow,
    ObserveOutcomesWorkflow,
)
"""Workflow classes every worker registers."""


def pulumi_config(settings: Settings) -> PulumiConfig:
    """Pulumi backend, secrets and work dirs derived from ``settings``."""
    return PulumiConfig(
        backend_url=settings.effective_backend_url,
        passphrase_file=settings.pulumi_passphrase_file,
        work_root=settings.state_dir / "stacks",
        pulumi_root=settings.pulumi_root,
        cpu_nice=settings.pulumi_nice,
    )


def build_activities(settings: Settings, client: Client) -> list[Callable[..., Any]]:
    """Activity callables with their clients injected."""
    driver = StackDriver(pulumi_config(settings))
    smoke = SmokeActivities(driver)
    shadow = ShadowActivities(driver, settings.state_dir)
    models = model_registry(settings)
    outcome_store = outcomes_store(settings)
    scoring = ScoringActivities.from_registry(models)
    recorder = OutcomeRecorder(outcome_store)
    outcomes = OutcomeActivities(outcome_store, recorder)
    retraining = RetrainingActivities(models, outcome_store)
    observability.set_model_version(scoring.predictor.model_sha256)
    cutover = CutoverActivities(driver, settings.state_dir)
    watch = WatchActivities(client, scoring, settings.state_dir, recorder, ShadowPlanner(client),
                            sync=SyncSupervisor(client, driver, settings.state_dir),
                            failover=FailoverMonitor(client, settings.state_dir))
    return [
        scoring.score_instances,
        watch.watch_fleet,
        smoke.apply_smoke_stack,
        smoke.destroy_smoke_stack,
        smoke.score_smoke_model,
        shadow.provision_shadow,
        shadow.wait_for_sync,
        shadow.replication_status,
        shadow.supervise_sync,
        shadow.destroy_shadow,
        *cutover_activities(cutover),
        *recovery_activities(RecoveryActivities(driver, settings.state_dir)),
        outcomes.record_outcome,
        outcomes.report_outcome_evidence,
        outcomes.observe_outcomes,
        outcomes.resolve_outcomes,
        retraining.retrain_challenger,
        retraining.train_challenger,
        retraining.evaluate_challenger,
        retraining.promote_challenger,
    ]


def model_registry(settings: Settings) -> ModelRegistry:
    """Promoted models and the version pointer, in the state dir."""
    return ModelRegistry(settings.state_dir / "models")


def outcomes_store(settings: Settings) -> OutcomeStore:
    """Cutover and near-miss records with their outcomes, in the state dir."""
    return OutcomeStore(settings.state_dir / "outcomes" / "outcomes.sqlite")


def recovery_activities(recovery: RecoveryActivities) -> list[Callable[..., Any]]:
    """Recovery of a former primary as the new shadow (or its retirement)."""
    return [
        recovery.inspect_node,
        recovery.rejoin_former_primary_as_shadow,
        recovery.retire_former_primary,
    ]


def cutover_activities(cutover: CutoverActivities) -> list[Callable[..., Any]]:
    """The cutover saga's activities."""
    return [
        cutover.preflight_cutover,
        cutover.switch_over,
        cutover.fence_primary,
        cutover.fence_router,
        cutover.stop_primary,
        cutover.catch_up_shadow,
        cutover.promote_shadow,
        cutover.shift_traffic,
        cutover.restore_primary,
        cutover.verify_cutover,
        cutover.recover_forward,
        cutover.finalise_cutover,
    ]


def new_worker(
    client: Client,
    settings: Settings,
    executor: concurrent.futures.ThreadPoolExecutor,
    *,
    task_queue: str | None = None,
    extra_workflows: Sequence[type] = (),
    with_activities: bool = True,
) -> Worker:
    """A worker with every workflow and activity, polling ``task_queue`` (default: settings').

    Tests add their own workflows with ``extra_workflows``, or leave the activities to a
    separate worker process with ``with_activities=False``.
    """
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[*WORKFLOWS, *extra_workflows],
        activities=build_activities(settings, client) if with_activities else [],
        activity_executor=executor,
        max_concurrent_activities=settings.max_concurrent_activities,
        # Heartbeats reach the server at most every 80 % of an activity's heartbeat timeout
        # (96 s for the fleet watcher's 2 minutes) instead of the SDK's 60 s default cap.
        max_heartbeat_throttle_interval=timedelta(seconds=100),
    )
