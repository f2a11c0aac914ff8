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
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.cutover import PlatformCutoverActivities
from activities.outcomes import OutcomeRecorder, StoreOutcomeActivities
from activities.outcomes_store import OutcomeStore
from activities.retraining import RegistryRetrainingActivities
from activities.scoring import FleetScorer
from activities.shadow import PlatformShadowActivities
from activities.watching.failover import FailoverMonitor
from activities.watching.history import FailureHistory
from activities.watching.planner import ShadowPlanner
from activities.watching.shadow_loss import ShadowLossMonitor
from activities.watching.sync import SyncSupervisor
from activities.watching.watcher import FleetWatchActivities
from infra import observability
from infra.factory import Platforms
from infra.pg_security import ReplicationSecurity
from infra.platform import PlatformContext
from infra.pulumi_engine import PulumiConfig, StackDriver
from models.registry import ModelRegistry
from workers.settings import Settings
from workflows.cutover import CutoverWorkflow
from workflows.fleet_watcher import FleetWatcherWorkflow
from workflows.host_task import HostTaskWorkflow
from workflows.protection import InstanceProtectionWorkflow
from workflows.retraining import ModelRetrainingWorkflow, ObserveOutcomesWorkflow

WORKFLOWS: Sequence[type] = (
    InstanceProtectionWorkflow,
    FleetWatcherWorkflow,
    CutoverWorkflow,
    ModelRetrainingWorkflow,
    ObserveOutcomesWorkflow,
    HostTaskWorkflow,
)
"""Workflow classes every worker registers."""

PASSTHROUGH_MODULES = ("contracts", "models")
"""Imported once, not per workflow run, by the workflow sandbox: the contracts and the pure
policy (``models.policy``) that workflows use are deterministic, and their dataclasses must
be the same classes inside and outside the sandbox."""


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every ShadowShift worker (and the replay tests) runs workflows in."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES))


def pulumi_config(settings: Settings) -> PulumiConfig:
    """Pulumi backend, secrets and work dirs derived from ``settings``."""
    return PulumiConfig(
        backend_url=settings.effective_backend_url,
        passphrase_file=settings.pulumi_passphrase_file,
        work_root=settings.state_dir / "stacks",
        pulumi_root=settings.pulumi_root,
        cpu_nice=settings.pulumi_nice,
    )


def platform_context(settings: Settings) -> PlatformContext:
    """The worker's Pulumi driver, state dir, cluster and replication security."""
    security = ReplicationSecurity(sslmode=settings.pg_replication_sslmode,
                                   passfile=settings.pg_passfile, server_ca=settings.pg_tls_ca)
    return PlatformContext(StackDriver(pulumi_config(settings)), settings.state_dir,
                           settings.kubeconfig, security)


def platforms(settings: Settings) -> Platforms:
    """Every platform, with the worker's Pulumi driver and state dir."""
    return Platforms(platform_context(settings))


def build_activities(settings: Settings, client: Client, *,
                     served: Platforms | None = None,
                     feedback: bool = True,
                     scorer: FleetScorer | None = None) -> list[Callable[..., Any]]:
    """Activity callables with their clients injected.

    ``served``: the platforms (default: every platform, with this worker's Pulumi driver);
    ``feedback``: whether the fleet watcher records near misses and probes open outcome
    records (the bench's stand-in platform has nothing to probe); ``scorer``: the fleet
    scorer (default: :func:`fleet_scorer`; pass one to save its baselines at shutdown)."""
    served = served or platforms(settings)
    models = model_registry(settings)
    outcome_store = outcomes_store(settings)
    scorer = scorer or fleet_scorer(settings)
    recorder = OutcomeRecorder(outcome_store)
    outcomes = StoreOutcomeActivities(outcome_store, served, recorder)
    retraining = RegistryRetrainingActivities(models, outcome_store)
    observability.set_model_version(scorer.predictor.model_sha256)
    shadow = PlatformShadowActivities(served)
    cutover = PlatformCutoverActivities(served, settings.state_dir)
    watch = FleetWatchActivities(client, scorer, served, recorder if feedback else None,
                                 ShadowPlanner(client),
                                 sync=SyncSupervisor(client, served),
                                 failover=FailoverMonitor(client),
                                 history=FailureHistory(outcome_store),
                                 shadow_loss=ShadowLossMonitor(client, served))
    return [
        watch.watch_fleet,
        shadow.provision_shadow,
        shadow.wait_for_sync,
        shadow.destroy_shadow,
        shadow.inspect_node,
        shadow.rejoin_former_primary,
        shadow.retire_former_primary,
        shadow.host_tasks,
        *cutover_activities(cutover),
        outcomes.record_outcome,
        outcomes.report_outcome_evidence,
        outcomes.observe_outcomes,
        outcomes.resolve_outcomes,
        retraining.retrain_challenger,
    ]


def fleet_scorer(settings: Settings) -> FleetScorer:
    """The registry's current model with the worker's per-instance baselines (state dir).

    Raises:
        ModelError: no model can be loaded.
    """
    return FleetScorer.from_registry(model_registry(settings),
                                     baselines_path=settings.state_dir / "baselines.npz")


def model_registry(settings: Settings) -> ModelRegistry:
    """Promoted models and the version pointer, in the state dir."""
    return ModelRegistry(settings.state_dir / "models")


def outcomes_store(settings: Settings) -> OutcomeStore:
    """Cutover and near-miss records with their outcomes, in the state dir."""
    return OutcomeStore(settings.state_dir / "outcomes" / "outcomes.sqlite")


def cutover_activities(cutover: PlatformCutoverActivities) -> list[Callable[..., Any]]:
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
    activities: Sequence[Callable[..., Any]] | None = None,
) -> Worker:
    """A worker with every workflow and activity, polling ``task_queue`` (default: settings').

    Tests add their own workflows with ``extra_workflows``, leave the activities to a separate
    worker process with ``with_activities=False``, or give their own ``activities``.
    """
    if activities is None:
        activities = build_activities(settings, client) if with_activities else []
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[*WORKFLOWS, *extra_workflows],
        activities=list(activities),
        activity_executor=executor,
        workflow_runner=workflow_runner(),
        max_concurrent_activities=settings.max_concurrent_activities,
        # Heartbeats reach the server at most every 80 % of an activity's heartbeat timeout
        # (96 s for the fleet watcher's 2 minutes) instead of the SDK's 60 s default cap.
        max_heartbeat_throttle_interval=timedelta(seconds=100),
    )
