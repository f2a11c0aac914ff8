"""The fleet watcher: cheap watching of every protected instance.

Why one fleet-level activity instead of a polling loop per protection (DESIGN.md §2, cost
model): a per-instance "sample every 15 s" loop costs about 480 Temporal actions per
instance-hour. Here a single long-running activity samples every instance, scores them in
one LightGBM batch, runs the policy and *signals a protection only when something matters*:
a migrate decision, or its readiness score moving to another 10-point band. Its heartbeats
(throttled by the SDK to 80 % of the 2-minute heartbeat timeout, ~38 per hour) are shared by
the whole fleet, and a lost worker is noticed within the heartbeat timeout: the server then
retries the activity on another worker, which resumes from the heartbeated policy state.
Protections themselves hold no timers while protected.

Instances are discovered through Temporal visibility (free of actions): running
``InstanceProtectionWorkflow`` executions and the spec each carries in its memo.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.converter import value_to_type

from activities.scoring import MetricWindow, ScoreInstancesInput, ScoringActivities
from infra.local.haproxy import HAProxyManager
from infra.local.metrics import LocalMetricsCollector
from infra.local.postgres import PgEndpoint
from models.metrics import MetricSample, samples_to_arrays
from models.policy import PolicyConfig, PolicyState

PROTECTION_QUERY = "WorkflowType = 'InstanceProtectionWorkflow' AND ExecutionStatus = 'Running'"
READINESS_BAND = 10.0


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
    collector: LocalMetricsCollector
    samples: deque[MetricSample]
    last_band: float | None = None
    last_decision: str = "hold"


class WatchActivities:
    """The fleet watcher activity and what it needs: a client, the model, the state dir."""

    def __init__(self, client: Client, scoring: ScoringActivities, state_dir: Path) -> None:
        self._client = client
        self._scoring = scoring
        self._state_dir = state_dir

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
                await self._discover(watched, request.window_samples)
                next_discovery = time.monotonic() + request.discovery_interval_s
            if watched:
                policy_state, sent = await self._sample_and_decide(watched, request, policy_state)
                samples += 1
                signals += sent
            activity.heartbeat(policy_state)
            await asyncio.sleep(request.sample_interval_s)
        return WatchFleetResult(policy_state, samples, signals)

    async def _discover(self, watched: dict[str, _Watched], window: int) -> None:
        seen: set[str] = set()
        async for execution in self._client.list_workflows(PROTECTION_QUERY):
            memo = await execution.memo()
            spec: dict[str, Any] = memo.get("spec") or {}
            instance_id = spec.get("instance_id")
            if not instance_id or spec.get("platform", "local") != "local":
                continue
            seen.add(instance_id)
            if instance_id not in watched:
                watched[instance_id] = _Watched(
                    workflow_id=execution.id,
                    collector=LocalMetricsCollector(
                        instance_id,
                        PgEndpoint(port=int(spec["primary_port"])),
                        haproxy=HAProxyManager(self._state_dir / "haproxy"),
                    ),
                    samples=deque(maxlen=window),
                )
        for gone in set(watched) - seen:
            del watched[gone]

    async def _sample_and_decide(
        self, watched: dict[str, _Watched], request: WatchFleetInput, policy_state: PolicyState
    ) -> tuple[PolicyState, int]:
        for item in watched.values():
            item.samples.append(await asyncio.to_thread(item.collector.sample))
        windows = [_window(instance_id, item.samples) for instance_id, item in watched.items()]
        result = await asyncio.to_thread(
            self._scoring.score_instances,
            ScoreInstancesInput(
                windows, time.time(), request.profile, request.policy, policy_state
            ),
        )
        sent = 0
        for score in result.scores:
            item = watched[score.instance_id]
            band = _band(score.readiness_score)
            decision = score.decision if score.act else "hold"
            if band == item.last_band and decision == item.last_decision:
                continue  # nothing a protection needs to know
            item.last_band, item.last_decision = band, decision
            handle = self._client.get_workflow_handle(item.workflow_id)
            await handle.signal(
                "report_risk",
                {
                    "readiness_score": score.readiness_score if band is not None else 0.0,
                    "failure_probability": _finite(score.failure_probability),
                    "decision": decision,
                    "at": time.time(),
                },
            )
            sent += 1
        return result.policy_state, sent


def _window(instance_id: str, samples: deque[MetricSample]) -> MetricWindow:
    times, values = samples_to_arrays(list(samples))
    return MetricWindow(instance_id, times.tolist(), values)


def _band(score: float) -> float | None:
    return None if score != score else float(int(score // READINESS_BAND)) * READINESS_BAND


def _finite(value: float) -> float:
    return 0.0 if value != value else float(value)
