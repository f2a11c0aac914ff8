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
profile, kept current by ``set_policy``) within the fleet's budget. The watcher samples the node
the router currently sends traffic to, with its data directory's disk and any metric overlay
installed for that node (``infra/local/metric_overlay.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.converter import value_to_type

from activities.outcomes import OutcomeRecorder
from activities.scoring import (
    InstanceScore,
    MetricWindow,
    ScoreInstancesInput,
    ScoringActivities,
)
from activities.shadow_planner import ShadowPlanner
from infra.errors import InfraError
from infra.local.haproxy import HAProxyManager
from infra.local.metric_overlay import overlay_path
from infra.local.metrics import LocalMetricsCollector
from infra.local.postgres import PgEndpoint
from infra.local.spec import LocalShadowSpec
from models.metrics import MetricSample, samples_to_arrays
from models.policy import PolicyConfig, PolicyState
from models.shadow_budget import ShadowBudgetConfig
from workers.observability import observe_replication, observe_scores, set_model_version

PROTECTION_QUERY = "WorkflowType = 'InstanceProtectionWorkflow' AND ExecutionStatus = 'Running'"
READINESS_STEP = 10.0
"""Points a score must move from the last reported value before it is reported again."""


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


@dataclass
class WatchFleetResult:
    """What one run of the watcher did."""

    policy_state: PolicyState
    """Policy memory for the next run."""
    samples: int
    """Fleet samples taken."""
    signals_sent: int
    """Signals sent to protections."""


@dataclass
class _Watched:
    workflow_id: str
    spec: LocalShadowSpec
    port: int
    collector: LocalMetricsCollector
    samples: deque[MetricSample]
    profile: str
    policy: PolicyConfig
    last_reported: float | None = None
    """Score last signalled (NaN: "no score" was signalled; ``None``: nothing yet)."""
    last_decision: str = "hold"


class WatchActivities:
    """The fleet watcher activity and what it needs: a client, the model, the state dir."""

    def __init__(self, client: Client, scoring: ScoringActivities, state_dir: Path,
                 outcomes: OutcomeRecorder | None = None,
                 shadows: ShadowPlanner | None = None) -> None:
        self._client = client
        self._scoring = scoring
        self._state_dir = state_dir
        self._outcomes = outcomes
        self._shadows = shadows
        self._haproxy = HAProxyManager(state_dir / "haproxy")

    @activity.defn
    async def watch_fleet(self, request: WatchFleetInput) -> WatchFleetResult:
        """Sample, score and decide for the whole fleet until ``max_duration_s``."""
        details = activity.info().heartbeat_details
        # Resume with the policy memory of the attempt that died (hysteresis, cooldowns).
        policy_state = value_to_type(PolicyState, details[0]) if details else request.policy_state
        watched: dict[str, _Watched] = {}
        started = time.monotonic()
        next_discovery = 0.0
        samples = signals = 0
        while time.monotonic() - started < request.max_duration_s:
            if time.monotonic() >= next_discovery:
                await self._discover(watched, request)
                next_discovery = time.monotonic() + request.discovery_interval_s
            if watched:
                policy_state, sent = await self._sample_and_decide(watched, request, policy_state)
                samples += 1
                signals += sent
            if self._outcomes is not None:  # feedback loop: probe open outcome records (free)
                await asyncio.to_thread(self._outcomes.probe_if_due)
            activity.heartbeat(policy_state)
            await asyncio.sleep(request.sample_interval_s)
        return WatchFleetResult(policy_state, samples, signals)

    async def _discover(self, watched: dict[str, _Watched], request: WatchFleetInput) -> None:
        """Refresh the list of protections and each one's policy from the spec in its memo
        (``set_policy`` rewrites the memo, and visibility reads cost no actions)."""
        seen: set[str] = set()
        query = f"{PROTECTION_QUERY} AND TaskQueue = '{activity.info().task_queue}'"
        async for execution in self._client.list_workflows(query):
            memo = await execution.memo()
            spec: dict[str, Any] = memo.get("spec") or {}
            instance_id = spec.get("instance_id")
            if not instance_id or spec.get("platform", "local") != "local":
                continue
            try:
                profile, policy = instance_policy(spec.get("policy") or {}, request)
                local = LocalShadowSpec(
                    instance_id=instance_id, primary_port=int(spec["primary_port"]),
                    shadow_port=int(spec["shadow_port"]), router_port=int(spec["router_port"]),
                    state_dir=self._state_dir,
                )
            except (KeyError, TypeError, ValueError, InfraError) as err:
                activity.logger.warning("Not watching %s: unusable spec (%s).", execution.id, err)
                continue
            seen.add(instance_id)
            if self._shadows is not None:  # risk-triggered shadows: tier and standing flag
                self._shadows.track(execution.id, spec)
            item = watched.get(instance_id)
            if item is None:
                watched[instance_id] = self._watch(execution.id, local, local.primary_port,
                                                   request.window_samples, profile, policy)
            else:
                item.profile, item.policy = profile, policy
        for gone in set(watched) - seen:
            del watched[gone]

    def _watch(self, workflow_id: str, spec: LocalShadowSpec, port: int, window: int,
               profile: str, policy: PolicyConfig) -> _Watched:
        collector = LocalMetricsCollector(
            spec.instance_id, PgEndpoint(port=port), haproxy=self._haproxy,
            server_name=spec.primary_node if port == spec.primary_port else spec.shadow_node,
            overlay=overlay_path(self._state_dir, port),
        )
        return _Watched(workflow_id, spec, port, collector, deque(maxlen=window), profile, policy)

    async def _follow_primary(self, item: _Watched) -> _Watched:
        """Sample whichever node the router sends traffic to: after a cutover the instance is
        the former shadow, a different host with a history of its own (fresh window)."""
        port = await asyncio.to_thread(self._serving_port, item.spec)
        if port is None or port == item.port:
            return item
        fresh = self._watch(item.workflow_id, item.spec, port, item.samples.maxlen or 1,
                            item.profile, item.policy)
        fresh.last_reported, fresh.last_decision = item.last_reported, item.last_decision
        activity.logger.info("%s is now served by port %s; watching it.", item.spec.instance_id,
                             port)
        return fresh

    def _serving_port(self, spec: LocalShadowSpec) -> int | None:
        try:
            weights = self._haproxy.weights(spec.instance_id)
        except InfraError:
            return None
        live = [node for node, weight in weights.items() if weight > 0]
        if len(live) != 1:
            return None  # no traffic, or mid-shift: keep watching the same node
        ports = {spec.primary_node: spec.primary_port, spec.shadow_node: spec.shadow_port}
        return ports.get(live[0])

    async def _sample_and_decide(
        self, watched: dict[str, _Watched], request: WatchFleetInput, policy_state: PolicyState
    ) -> tuple[PolicyState, int]:
        for instance_id in list(watched):
            item = watched[instance_id] = await self._follow_primary(watched[instance_id])
            sample = await asyncio.to_thread(item.collector.sample)
            if item.samples and sample.timestamp < item.samples[-1].timestamp:
                item.samples.clear()  # a replayed trace ended: its virtual clock was ahead
            item.samples.append(sample)
            observe_replication(instance_id, sample.replication_lag_bytes)
        groups: dict[tuple[object, ...], list[str]] = {}
        for instance_id, item in watched.items():
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
                "node": item.collector.server_name,
            },
        )
        if self._outcomes is not None:  # feedback loop: windows for records, near misses
            window = _window(score.instance_id, item.samples)
            await asyncio.to_thread(
                self._outcomes.note_risk, score.instance_id, time.time(),
                score.readiness_score, decision, item.policy.threshold,
                {"timestamps": window.timestamps, "values": window.values},
                PgEndpoint(port=item.port))
        return 1


def worth_reporting(last_reported: float | None, last_decision: str, threshold: float,
                    score: float, decision: str) -> bool:
    """Whether a protection needs to hear about ``score``: a new decision, a threshold
    crossing, a 10-point move from the last score reported, or a score appearing or vanishing
    (NaN = no score)."""
    if last_reported is None or decision != last_decision:
        return True
    known, was_known = score == score, last_reported == last_reported  # NaN != NaN
    if known != was_known:
        return True
    if not known:
        return False
    crossed = (score >= threshold) != (last_reported >= threshold)
    return crossed or abs(score - last_reported) >= READINESS_STEP


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
