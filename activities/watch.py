"""The fleet watcher: cheap watching of every protected instance.

Why one fleet-level activity instead of a polling loop per protection (DESIGN.md §2, cost
model): a per-instance "sample every 15 s" loop costs about 480 Temporal actions per
instance-hour. Here a single long-running activity samples every instance, scores them in
one LightGBM batch, runs the policy and *signals a protection only when something matters*:
a change of decision, a score crossing the instance's threshold, or a score 10 points away from
the last one reported (a score hovering at a band edge would otherwise signal, and upsert the
protection's search attributes, on every sample). Its heartbeats
(throttled by the SDK to 80 % of the 2-minute heartbeat timeout, ~38 per hour) are shared by
the whole fleet, and a lost worker is noticed within the heartbeat timeout: the server then
retries the activity on another worker, which resumes from the heartbeated policy state.
Protections themselves hold no timers while protected.

Instances are discovered through Temporal visibility (free of actions): running
``InstanceProtectionWorkflow`` executions and the spec each carries in its memo. Each one is
decided with its own policy (the spec's threshold, hysteresis, cooldown, advisory flag and
profile, kept current by ``set_policy``) within the fleet's budget. Sampling is per platform:
local protections (``activities/watch_local.py``) are read every interval from the node the
router sends traffic to; AWS protections (``activities/watch_aws.py``) from CloudWatch once per
CloudWatch period, scored only when a new datapoint arrived, and their EC2 scheduled events
become ``report_event`` signals, each sent once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.converter import value_to_type

from activities.failover_monitor import FailoverMonitor
from activities.outcomes import OutcomeRecorder
from activities.scoring import (
    InstanceScore,
    MetricWindow,
    ScoreInstancesInput,
    ScoringActivities,
)
from activities.shadow_planner import ShadowPlanner
from activities.sync_supervisor import SyncSupervisor
from activities.watch_aws import AwsWatcher, aws_spec_of
from activities.watch_aws_fleet import AwsFleet
from activities.watch_items import READINESS_STEP as READINESS_STEP
from activities.watch_items import Watched as _Watched
from activities.watch_items import worth_reporting
from activities.watch_local import local_collector, local_spec, serving_port
from infra.aws.spec import AwsShadowSpec
from infra.errors import InfraError
from infra.local.haproxy import HAProxyManager
from infra.local.postgres import PgEndpoint
from infra.local.spec import LocalShadowSpec
from models.metrics import MetricSample, samples_to_arrays
from models.policy import PolicyConfig, PolicyState
from models.shadow_budget import ShadowBudgetConfig
from workers.observability import observe_replication, observe_scores, set_model_version
from workflows import search_attributes

PROTECTION_QUERY = "WorkflowType = 'InstanceProtectionWorkflow' AND ExecutionStatus = 'Running'"


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
    profile: str = "default"
    """Readiness profile."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Fleet policy (threshold, hysteresis, cooldown, budget...)."""
    policy_state: PolicyState = field(default_factory=PolicyState)
    """Policy memory handed over from the previous run."""
    shadow_budget: ShadowBudgetConfig = field(default_factory=ShadowBudgetConfig)
    """Fleet shadow budget and the tier-3 trigger (``models/shadow_budget.py``)."""
    aws_period_s: int = 60
    """CloudWatch period of the AWS instances' metrics (60 with detailed monitoring, 300 with
    basic); they are read once per period."""
    events_interval_s: float = 300.0
    """Time between two polls of the AWS protections' EC2 scheduled events."""
    events_sent: list[str] = field(default_factory=list)
    """EC2 events already signalled, handed over from the previous run."""


@dataclass
class WatchFleetResult:
    """What one run of the watcher did."""

    policy_state: PolicyState
    """Policy memory for the next run."""
    samples: int
    """Fleet samples taken."""
    signals_sent: int
    """Signals sent to protections."""
    events_sent: list[str] = field(default_factory=list)
    """EC2 events signalled so far, for the next run."""


class WatchActivities:
    """The fleet watcher activity and what it needs: a client, the model, the state dir."""

    def __init__(self, client: Client, scoring: ScoringActivities, state_dir: Path,
                 outcomes: OutcomeRecorder | None = None,
                 shadows: ShadowPlanner | None = None, aws: AwsWatcher | None = None,
                 sync: SyncSupervisor | None = None,
                 failover: FailoverMonitor | None = None) -> None:
        self._client = client
        self._scoring = scoring
        self._state_dir = state_dir
        self._outcomes = outcomes
        self._shadows = shadows
        self._haproxy = HAProxyManager(state_dir / "haproxy")
        self._aws = AwsFleet(client, aws or AwsWatcher(), set())
        self._sync = sync
        self._failover = failover

    @activity.defn
    async def watch_fleet(self, request: WatchFleetInput) -> WatchFleetResult:
        """Sample, score and decide for the whole fleet until ``max_duration_s``."""
        details = activity.info().heartbeat_details
        # Resume with the policy memory of the attempt that died (hysteresis, cooldowns).
        policy_state = value_to_type(PolicyState, details[0]) if details else request.policy_state
        # ... and with the keys of the EC2 events already sent, so none is sent twice.
        self._aws.events_sent = set(value_to_type(list[str], details[1]) if len(details) > 1
                                    else request.events_sent)
        watched: dict[str, _Watched] = {}
        if self._failover is not None:  # an earlier run's outages may be hours old
            self._failover.reset()
        # Tier 1's non-strict mode and failover of a silent primary check every second; the
        # samples come once per interval.
        checks = [asyncio.create_task(c.run()) for c in (self._sync, self._failover) if c]
        try:
            return await self._watch_until_done(request, watched, policy_state)
        finally:
            for check in checks:
                check.cancel()
            await asyncio.gather(*checks, return_exceptions=True)

    async def _watch_until_done(self, request: WatchFleetInput, watched: dict[str, _Watched],
                                policy_state: PolicyState) -> WatchFleetResult:
        started = time.monotonic()
        next_discovery = next_aws = next_events = 0.0
        samples = signals = 0
        while time.monotonic() - started < request.max_duration_s:
            now = time.monotonic()
            if now >= next_discovery:
                await self._discover(watched, request)
                next_discovery = now + request.discovery_interval_s
            read_aws = now >= next_aws
            if read_aws:
                next_aws = now + request.aws_period_s
            if watched:
                policy_state, sent = await self._sample_and_decide(watched, request, policy_state,
                                                                   read_aws)
                samples += 1
                signals += sent
            if now >= next_events:
                signals += await self._aws.report_events(watched)
                next_events = now + request.events_interval_s
            if self._outcomes is not None:  # feedback loop: probe open outcome records (free)
                await asyncio.to_thread(self._outcomes.probe_if_due)
            activity.heartbeat(policy_state, sorted(self._aws.events_sent))
            await asyncio.sleep(request.sample_interval_s)
        return WatchFleetResult(policy_state, samples, signals, sorted(self._aws.events_sent))

    async def _discover(self, watched: dict[str, _Watched], request: WatchFleetInput) -> None:
        """Refresh the list of protections and each one's policy from the spec in its memo
        (``set_policy`` rewrites the memo, and visibility reads cost no actions)."""
        seen: set[str] = set()
        aws_specs: dict[str, tuple[str, AwsShadowSpec]] = {}
        aws_states: dict[str, tuple[str, dict[str, Any]]] = {}  # phase and failover policy
        policies: dict[str, tuple[str, PolicyConfig]] = {}
        query = f"{PROTECTION_QUERY} AND TaskQueue = '{activity.info().task_queue}'"
        async for execution in self._client.list_workflows(query):
            memo = await execution.memo()
            spec: dict[str, Any] = memo.get("spec") or {}
            instance_id = spec.get("instance_id")
            platform = spec.get("platform", "local")
            if not instance_id or platform not in ("local", "aws"):
                continue
            try:
                profile, policy = instance_policy(spec.get("policy") or {}, request)
                if platform == "aws":
                    aws_specs[instance_id] = (execution.id, aws_spec_of(spec))
                    policies[instance_id] = (profile, policy)
                else:
                    local = local_spec(spec, self._state_dir)
            except (KeyError, TypeError, ValueError, InfraError) as err:
                activity.logger.warning("Not watching %s: unusable spec (%s).", execution.id, err)
                continue
            if self._shadows is not None:  # risk-triggered shadows: tier and standing flag
                self._shadows.track(execution.id, spec)
            phase = execution.typed_search_attributes.get(search_attributes.PHASE) or ""
            # The fleet's advisory mode holds for automatic failover too.
            failover_policy = {**(spec.get("policy") or {}), "advisory": policy.advisory}
            if platform == "aws":
                aws_states[instance_id] = (phase, failover_policy)
                continue  # located below, for the whole fleet at once
            seen.add(instance_id)
            if self._sync is not None:  # the attributes follow tier changes and phases
                attributes = execution.typed_search_attributes
                tier = attributes.get(search_attributes.TIER) or int(spec.get("tier", 2))
                self._sync.track(execution.id, replace(local, tier=tier), tier, phase,
                                 strict=spec.get("sync_strict") is True)
            if self._failover is not None:
                self._failover.track(execution.id, local, phase, failover_policy)
            item = watched.get(instance_id)
            if item is None:
                watched[instance_id] = self._watch(execution.id, local, local.primary_port,
                                                   request.window_samples, profile, policy)
            else:
                item.profile, item.policy = profile, policy
        seen |= await self._aws.locate(watched, aws_specs, policies, request.window_samples)
        if self._failover is not None:  # EC2 states come with discovery: no extra calls
            located = self._aws.located
            self._failover.unobserved(set(aws_specs) - set(located))
            # Together: a protection slow to take its request holds no other's.
            await asyncio.gather(*(
                self._failover.observe_aws(aws_specs[iid][0], target, *aws_states[iid])
                for iid, target in located.items()))
        for gone in set(watched) - seen:
            del watched[gone]
        for checker in (self._sync, self._failover):
            if checker is not None:
                checker.keep_only(seen)

    def _watch(self, workflow_id: str, spec: LocalShadowSpec, port: int, window: int,
               profile: str, policy: PolicyConfig) -> _Watched:
        collector = local_collector(self._haproxy, self._state_dir, spec, port)
        return _Watched(workflow_id, spec, port, collector, deque(maxlen=window), profile, policy)

    async def _follow_primary(self, item: _Watched) -> _Watched:
        """Sample whichever node the router sends traffic to: after a cutover the instance is
        the former shadow, a different host with a history of its own (fresh window)."""
        if item.aws is not None:
            return item  # AWS: the serving instance is looked up at discovery
        port = await asyncio.to_thread(serving_port, self._haproxy, item.spec)
        if port is None or port == item.port:
            return item
        fresh = self._watch(item.workflow_id, item.spec, port, item.samples.maxlen or 1,
                            item.profile, item.policy)
        fresh.last_reported, fresh.last_decision = item.last_reported, item.last_decision
        activity.logger.info("%s is now served by port %s; watching it.", item.spec.instance_id,
                             port)
        return fresh

    async def _sample_and_decide(
        self, watched: dict[str, _Watched], request: WatchFleetInput, policy_state: PolicyState,
        read_aws: bool = True,
    ) -> tuple[PolicyState, int]:
        fresh: list[str] = []  # scored this round: each new sample is one policy reading
        for instance_id in list(watched):
            if watched[instance_id].aws is not None:
                continue
            item = watched[instance_id] = await self._follow_primary(watched[instance_id])
            sample = await asyncio.to_thread(item.collector.sample)
            if item.samples and sample.timestamp < item.samples[-1].timestamp:
                item.samples.clear()  # a replayed trace ended: its virtual clock was ahead
            item.samples.append(sample)
            fresh.append(instance_id)
            observe_replication(instance_id, sample.replication_lag_bytes)
        if read_aws:
            fresh += await self._aws.sample(watched, request.aws_period_s)
        groups: dict[tuple[object, ...], list[str]] = {}
        for instance_id in fresh:
            item = watched[instance_id]
            key = (item.profile, item.policy.threshold, item.policy.consecutive_readings,
                   item.policy.cooldown_s, item.policy.advisory)
            groups.setdefault(key, []).append(instance_id)
        sent = 0
        for members in groups.values():
            first = watched[members[0]]
            # One batch per distinct policy; the memory (and the fleet budget in it) is shared.
            result = await asyncio.to_thread(
                self._scoring.score_instances,
                ScoreInstancesInput(
                    [_window(i, watched[i].samples) for i in members], time.time(),
                    first.profile, first.policy, policy_state,
                ),
            )
            policy_state = result.policy_state
            set_model_version(result.model_sha256)
            for score in result.scores:
                observe_scores(score.instance_id, score.readiness_score, score.failure_probability)
                sent += await self._signal_on_change(watched[score.instance_id], score)
                if self._shadows is not None:
                    self._shadows.note_score(score.instance_id, score.readiness_score)
        if self._shadows is not None:
            sent += await self._shadows.update(list(watched), time.time(), request.shadow_budget)
        return policy_state, sent

    async def _signal_on_change(self, item: _Watched, score: InstanceScore) -> int:
        decision = score.decision if score.act else "hold"
        if not worth_reporting(item.last_reported, item.last_decision, item.policy.threshold,
                               score.readiness_score, decision):
            return 0  # nothing a protection needs to know
        item.last_reported, item.last_decision = score.readiness_score, decision
        handle = self._client.get_workflow_handle(item.workflow_id)
        await handle.signal(
            "report_risk",
            {
                "readiness_score": _finite(score.readiness_score),
                "failure_probability": _finite(score.failure_probability),
                "decision": decision,
                "at": time.time(),
                # Which node was scored (after a cutover, the former shadow); extra keys are
                # ignored by the protection's RiskReport, and show in the history.
                "node": item.node,
            },
        )
        # Feedback loop: windows for records, near misses (outcome probes are local-only).
        if self._outcomes is not None and item.aws is None:
            window = _window(score.instance_id, item.samples)
            await asyncio.to_thread(
                self._outcomes.note_risk, score.instance_id, time.time(),
                score.readiness_score, decision, item.policy.threshold,
                {"timestamps": window.timestamps, "values": window.values},
                PgEndpoint(port=item.port))
        return 1


def instance_policy(spec_policy: dict[str, Any], request: WatchFleetInput) -> tuple[str,
                                                                                     PolicyConfig]:
    """The readiness profile and policy of one protection: its spec's threshold, hysteresis,
    cooldown and advisory flag over the fleet's budget and maintenance windows."""
    fleet = request.policy
    policy = dataclasses.replace(
        fleet,
        threshold=float(spec_policy.get("threshold", fleet.threshold)),
        consecutive_readings=int(
            spec_policy.get("consecutive_readings", fleet.consecutive_readings)),
        cooldown_s=float(spec_policy.get("cooldown_s", fleet.cooldown_s)),
        advisory=bool(spec_policy.get("advisory", False)) or fleet.advisory,
    )
    return str(spec_policy.get("profile", request.profile)), policy


def _window(instance_id: str, samples: deque[MetricSample]) -> MetricWindow:
    times, values = samples_to_arrays(list(samples))
    return MetricWindow(instance_id, times.tolist(), values)


def _finite(value: float) -> float:
    return 0.0 if value != value else float(value)
