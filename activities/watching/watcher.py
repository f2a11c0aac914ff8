"""The fleet watcher's loop: discover, locate, sample, score, decide, tell.

Instances are discovered through Temporal visibility (free of actions,
:mod:`.targets`) and read through their platform's ``FleetObserver``: locally the node the
router serves is sampled every interval; on AWS CloudWatch is read once per metrics period
and a sample counts only when a new datapoint arrived. The fleet is scored in one LightGBM
batch, each protection with its own policy (its spec's threshold, hysteresis, advisory flag
and profile, kept current by ``set_policy``), within the fleet's budget.

What the protections hear, each a Temporal action, so only when it matters:

- ``report_risk`` (signal): a change of decision, a score crossing the instance's threshold,
  or a score 10 points away from the last one reported (a score hovering at a band edge would
  otherwise signal, and upsert the protection's search attributes, on every sample);
- ``request_cutover`` (update, trigger ``prediction``): the policy decided to migrate. The
  protection answers at once: ``scheduled`` keeps the fleet-budget slot until the cutover
  workflow ends (checked at discovery, free), a refusal frees it at once and, for the
  cooldown the protection measures on its own clock, keeps the watcher quiet that long;
- ``report_event`` (signal): a platform's scheduled event (EC2 maintenance...), once each.

Each window carries the instance's historical failure rate, read from the outcome store
(:mod:`.history`: per instance, with its platform-and-tier class as the prior).

Heartbeats (throttled by the SDK to 80 % of the 2-minute heartbeat timeout, ~38 per hour)
are shared by the whole fleet; a lost worker is noticed within the heartbeat timeout, and the
activity resumes on another worker from the heartbeated policy memory.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Mapping

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.converter import value_to_type
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.outcomes import OutcomeRecorder
from activities.scoring import (
    FleetScorer,
    InstanceScore,
    MetricWindow,
    ScoreInstancesInput,
    ScoreInstancesResult,
)
from activities.watching.failover import FailoverMonitor
from activities.watching.history import FailureHistory, instance_class
from activities.watching.items import Target, Watched, worth_reporting
from activities.watching.planner import ShadowPlanner
from activities.watching.shadow_loss import ShadowLossMonitor
from activities.watching.sync import SyncSupervisor
from activities.watching.targets import discover
from contracts.cutover import cutover_workflow_id
from contracts.errors import COOLDOWN, INVALID_REQUEST
from contracts.policy import PolicyState, validate_budget
from contracts.protection import (
    PREDICTION,
    CutoverRequest,
    ExternalEvent,
    ProtectionApi,
    RiskReport,
)
from contracts.watch import WatchActivities, WatchFleetInput, WatchFleetResult
from infra.errors import InfraError
from infra.factory import Platforms
from infra.observability import observe_replication, observe_scores, set_model_version
from infra.platform import FleetObserver, Located
from models.metrics import samples_to_arrays
from models.policy import finish_migration, refused
from models.shadow_budget import validate_shadow_budget

REFUSED_QUIET_S = 300.0
"""How long the watcher stays quiet about an instance whose protection refused a migration
for a reason that states no time (paused, no healthy shadow, a cutover in progress)."""


class FleetWatchActivities(WatchActivities):
    """The fleet watcher activity and what it needs: a client, the scorer, the platforms."""

    def __init__(self, client: Client, scorer: FleetScorer, platforms: Platforms,
                 outcomes: OutcomeRecorder | None = None,
                 shadows: ShadowPlanner | None = None, sync: SyncSupervisor | None = None,
                 failover: FailoverMonitor | None = None,
                 history: FailureHistory | None = None,
                 shadow_loss: ShadowLossMonitor | None = None) -> None:
        self._client = client
        self._scorer = scorer
        self._platforms = platforms
        self._outcomes = outcomes
        self._shadows = shadows
        self._sync = sync
        self._failover = failover
        self._history = history
        self._shadow_loss = shadow_loss

    @activity.defn
    async def watch_fleet(self, request: WatchFleetInput) -> WatchFleetResult:
        """Sample, score and decide for the whole fleet until ``max_duration_s``."""
        try:
            validate_budget(request.budget)
            validate_shadow_budget(request.shadow_budget)
        except ValueError as err:  # PolicyError is one
            raise ApplicationError(f"invalid watcher input: {err}", type=INVALID_REQUEST,
                                   non_retryable=True) from err
        details = activity.info().heartbeat_details
        # Resume with the policy memory of the attempt that died (hysteresis, budget) and
        # with the keys of the scheduled events already sent, so none is sent twice.
        state = value_to_type(PolicyState, details[0]) if details else request.policy_state
        sent = set(value_to_type(list[str], details[1]) if len(details) > 1
                   else request.events_sent)
        last = (value_to_type(dict[str, float], details[2]) if len(details) > 2
                else dict(request.last_sample_at))
        run = _Run(self, request, state, sent, last)
        checks = [asyncio.create_task(c.run()) for c in self._checkers() if c]
        try:
            return await run.until_done()
        finally:
            for check in checks:
                check.cancel()
            await asyncio.gather(*checks, return_exceptions=True)

    def _checkers(self) -> tuple[SyncSupervisor | FailoverMonitor | ShadowLossMonitor | None,
                                 ...]:
        """The per-protection checks that run beside sampling, each on its own clock."""
        return (self._sync, self._failover, self._shadow_loss)


class _Run:
    """One run of the watcher activity: its observers, targets, windows and memory."""

    def __init__(self, owner: FleetWatchActivities, request: WatchFleetInput,
                 state: PolicyState, events_sent: set[str],
                 last_sample_at: dict[str, float]) -> None:
        self.owner = owner
        self.request = request
        self.state = state
        self.events_sent = events_sent
        self.last_sample_at = last_sample_at
        self.observers: dict[str, FleetObserver] = {
            name: owner._platforms.observer(name, request.metrics_period_s)
            for name in owner._platforms.names}
        self.targets: dict[str, Target] = {}
        self.watched: dict[str, Watched] = {}
        self.samples = self.signals = 0
        for checker in owner._checkers():
            if checker is not None:  # an earlier run's outages may be hours old
                checker.reset(self.observers)

    async def until_done(self) -> WatchFleetResult:
        request = self.request
        started = time.monotonic()
        next_discovery = next_events = 0.0
        while time.monotonic() - started < request.max_duration_s:
            now = time.monotonic()
            if now >= next_discovery:
                await self.discover()
                next_discovery = now + request.discovery_interval_s
            if self.watched:
                await self.sample_and_decide()
                self.samples += 1
            if now >= next_events:
                await self.report_events()
                next_events = now + request.events_interval_s
            if self.owner._outcomes is not None:  # feedback loop: probe open records (free)
                await asyncio.to_thread(self.owner._outcomes.probe_if_due)
            activity.heartbeat(self.state, sorted(self.events_sent), self.last_sample_at)
            await asyncio.sleep(request.sample_interval_s)
        return WatchFleetResult(self.state, self.samples, self.signals, sorted(self.events_sent),
                                self.last_sample_at)

    # -- discovery ---------------------------------------------------------------------------

    async def discover(self) -> None:
        """Refresh the protections, where each one's traffic goes, and the budget slots."""
        owner = self.owner
        self.targets = await discover(owner._client, activity.info().task_queue)
        located: dict[str, Located] = {}
        for name, observer in self.observers.items():
            members = {iid: t.request for iid, t in self.targets.items()
                       if t.request.spec.platform == name}
            if not members:
                continue
            try:
                located |= await asyncio.to_thread(observer.locate, members)
            except InfraError as err:
                activity.logger.warning("Cannot locate the %s protections (%s); keeping what "
                                        "was known.", name, err)
                located |= {iid: w.located for iid, w in self.watched.items() if iid in members}
        for iid in set(self.watched) - set(located):
            del self.watched[iid]
        for iid in set(self.last_sample_at) - set(self.targets):
            del self.last_sample_at[iid]
        for iid, where in located.items():
            self._watch(self.targets[iid], where)
        for iid, target in self.targets.items():
            self._track(target, located.get(iid))
        for checker in owner._checkers():
            if checker is not None:
                checker.keep_only(set(self.targets))
        await self._release_finished_slots()

    def _watch(self, target: Target, located: Located) -> None:
        item = self.watched.get(target.instance_id)
        if item is None:
            self.watched[target.instance_id] = Watched(
                target, located, deque(maxlen=self.request.window_samples))
            return
        item.target = target
        if located.identity != item.located.identity:
            self._fresh_window(item, located)

    def _fresh_window(self, item: Watched, located: Located) -> None:
        """After a cutover the instance is a different node with a history of its own."""
        item.located = located
        item.samples = deque(maxlen=self.request.window_samples)
        activity.logger.info("%s is now served by %s; watching it.", item.target.instance_id,
                             located.node)

    def _track(self, target: Target, located: Located | None) -> None:
        owner = self.owner
        if owner._shadows is not None:
            owner._shadows.track(target)
        if owner._failover is not None:
            owner._failover.track(target, located, fleet_advisory=self.request.budget.advisory)
        capabilities = owner._platforms.capabilities(target.request.spec.platform)
        if owner._sync is not None:
            owner._sync.track(target, supported=capabilities.sync_relax)
        if owner._shadow_loss is not None:
            owner._shadow_loss.track(target, located, supported=capabilities.reshadow)

    async def _release_finished_slots(self) -> None:
        """Free the budget slot of every migration whose cutover workflow has ended (describe
        costs no action), so a finished cutover holds no slot until it expires."""
        for instance_id, since in list(self.state.in_flight.items()):
            try:
                described = await self.owner._client.get_workflow_handle(
                    cutover_workflow_id(instance_id)).describe()
            except RPCError:
                continue  # not started yet (or gone): the slot expires on its own
            ended = described.status != WorkflowExecutionStatus.RUNNING
            if ended and described.start_time.timestamp() >= since - 60:
                self.state = finish_migration(self.state, instance_id)
                activity.logger.info("%s: cutover ended; its budget slot is free.", instance_id)

    # -- sampling and deciding -----------------------------------------------------------------

    async def sample_and_decide(self) -> None:
        fresh: list[str] = []
        now = time.time()
        for name, observer in self.observers.items():
            members = {iid: w.target.request for iid, w in self.watched.items()
                       if w.target.request.spec.platform == name}
            if not members:
                continue
            located = {iid: self.watched[iid].located for iid in members}
            try:
                readings = await asyncio.to_thread(observer.sample, members, located, now)
            except InfraError as err:
                activity.logger.warning("Cannot read the %s metrics (%s); next round.", name, err)
                continue
            for iid, reading in readings.items():
                item = self.watched[iid]
                if reading.located.identity != item.located.identity:
                    self._fresh_window(item, reading.located)
                stamp, last = reading.sample.timestamp, self.last_sample_at.get(iid)
                if last is not None and abs(stamp - last) < 1e-3:
                    continue  # the same datapoint again (across runs too): not a new reading
                if item.samples and stamp < item.samples[-1].timestamp:
                    item.samples.clear()  # the clock went back (a replayed trace ended)
                self.last_sample_at[iid] = stamp
                item.samples.append(reading.sample)
                fresh.append(iid)
                observe_replication(iid, reading.sample.replication_lag_bytes)
        if fresh:
            await self._score(fresh, now)
        if self.owner._shadows is not None:
            self.signals += await self.owner._shadows.update(list(self.watched), now,
                                                             self.request.shadow_budget)

    async def _score(self, fresh: list[str], now: float) -> None:
        result = await asyncio.to_thread(self._score_batch, fresh, now)
        self.state = result.policy_state
        set_model_version(result.model_sha256)
        for score in result.scores:
            observe_scores(score.instance_id, score.readiness_score, score.failure_probability)
            item = self.watched[score.instance_id]
            await self._report_risk(item, score)
            if score.decision == "migrate" and score.act:
                await self._request_migration(item, score)
            if self.owner._shadows is not None:
                self.owner._shadows.note_score(score.instance_id, score.readiness_score)

    def _score_batch(self, fresh: list[str], now: float) -> ScoreInstancesResult:
        """Windows with their history term, scored in one batch (on a thread: SQLite and
        LightGBM block)."""
        history = self.owner._history
        rates = history.rates({iid: instance_class(self.watched[iid].target.request.spec.platform,
                                                   self.watched[iid].target.tier)
                               for iid in fresh}) if history is not None else {}
        windows = [_window(iid, self.watched[iid], rates.get(iid, 0.0)) for iid in fresh]
        return self.owner._scorer.score(
            ScoreInstancesInput(windows, now, self.request.budget, self.state))

    async def _report_risk(self, item: Watched, score: InstanceScore) -> None:
        if not worth_reporting(item.last_reported, item.last_decision,
                               item.target.policy.threshold, score.readiness_score,
                               score.decision):
            return  # nothing a protection needs to know
        item.last_reported, item.last_decision = score.readiness_score, score.decision
        report = RiskReport(_finite(score.readiness_score), _finite(score.failure_probability),
                            score.decision, time.time(), item.node, score.reason)
        await self.owner._client.get_workflow_handle(item.target.workflow_id).signal(
            ProtectionApi.report_risk, report)
        self.signals += 1
        outcomes = self.owner._outcomes
        if outcomes is not None:  # feedback loop: windows for records, near misses
            window = _window(score.instance_id, item)
            address = await asyncio.to_thread(self._probe_address, item)
            await asyncio.to_thread(
                outcomes.note_risk, score.instance_id, time.time(), score.readiness_score,
                score.decision, item.target.policy.threshold,
                {"timestamps": window.timestamps, "values": window.values}, address)

    def _probe_address(self, item: Watched) -> tuple[str, int] | None:
        try:
            platform = self.owner._platforms.platform_for(item.target.request)
        except InfraError:
            return None
        try:
            return platform.probe_address(item.node)
        finally:
            platform.close()

    async def _request_migration(self, item: Watched, score: InstanceScore) -> None:
        """Ask the protection for a cutover; a refusal frees the slot and quiets the watcher
        for as long as the protection says (its cooldown) or :data:`REFUSED_QUIET_S`."""
        instance = item.target.instance_id
        request = CutoverRequest(f"readiness score {score.readiness_score:.0f} crossed the "
                                 f"threshold ({score.reason})", trigger=PREDICTION)
        try:
            await self.owner._client.get_workflow_handle(item.target.workflow_id).execute_update(
                ProtectionApi.request_cutover, request)
        except WorkflowUpdateFailedError as err:
            quiet = _retry_after(err.cause)
            self.state = refused(self.state, instance, time.time(), quiet)
            activity.logger.warning("%s: migration refused by the protection (%s); not asking "
                                    "again for %.0f s.", instance, _message(err.cause), quiet)
        except Exception as err:  # the protection could not be asked: the slot expires
            activity.logger.warning("%s: could not ask for a migration: %s", instance, err)
        else:
            activity.logger.info("%s: migration requested (%s).", instance, score.reason)
        self.signals += 1

    # -- scheduled events ----------------------------------------------------------------------

    async def report_events(self) -> None:
        """Send each new scheduled event once as ``report_event``; a key whose node no longer
        lists it is forgotten, so a check that is impaired again later is reported again."""
        for name, observer in self.observers.items():
            located = {iid: w.located for iid, w in self.watched.items()
                       if w.target.request.spec.platform == name}
            if not located:
                continue
            try:
                events = await asyncio.to_thread(observer.scheduled_events, located)
            except InfraError as err:
                activity.logger.warning("Cannot read the %s events (%s); next poll.", name, err)
                continue
            polled = {where.identity for where in located.values()}
            current = {e.key for found in events.values() for e in found}
            self.events_sent -= {k for k in self.events_sent
                                 if k.split("/")[0] in polled and k not in current}
            for iid, found in events.items():
                for event in found:
                    if event.key in self.events_sent:
                        continue
                    activity.logger.info("%s: scheduled event %s (%s).", iid, event.kind,
                                         event.detail)
                    await self.owner._client.get_workflow_handle(
                        self.watched[iid].target.workflow_id).signal(
                        ProtectionApi.report_event,
                        ExternalEvent(event.kind, event.detail, event.severity))
                    self.events_sent.add(event.key)
                    self.signals += 1


def _window(instance_id: str, item: Watched, failure_rate: float = 0.0) -> MetricWindow:
    times, values = samples_to_arrays(list(item.samples))
    return MetricWindow(instance_id, times.tolist(), values, failure_rate,
                        policy=item.target.policy)


def _finite(value: float) -> float:
    return 0.0 if not math.isfinite(value) else float(value)


def _message(cause: BaseException | None) -> str:
    return getattr(cause, "message", None) or str(cause)


def _retry_after(cause: BaseException | None) -> float:
    """The wait a refusal states (a cooldown's ``retry_after_s``), else the default."""
    if isinstance(cause, ApplicationError) and cause.type == COOLDOWN and cause.details:
        detail = cause.details[0]
        if isinstance(detail, Mapping) and isinstance(detail.get("retry_after_s"), int | float):
            return float(detail["retry_after_s"])
    return REFUSED_QUIET_S

