"""Automatic emergency failover of a serving node that stops answering.

The failure model predicts; a ``kill -9``, a power cut or a hung server give it nothing to
see. As every HA manager does for a dead leader (Patroni after its leader key's TTL), the
fleet watcher checks the node each protection's router serves, and when it has been down for
the protection's ``policy.failover_after_s`` while the shadow is ready, asks the protection
for an emergency cutover (``request_cutover`` with ``emergency``, trigger
``failure-detection``).

How "down" is observed is the platform's (``FleetObserver.liveness``): locally a ``PQping``
of the serving PostgreSQL every second; on AWS EC2's state of the serving instance at each
discovery. The protection's own checks still decide: it refuses while paused, during another
cutover, without a healthy shadow, or while tier 1 is relaxed (the shadow may lack
acknowledged writes; an operator must force that), and the cutover fences the dead node at
the router before anything is promoted. An advisory protection is only told in the log.

The serving node is *observed* in every phase in which the router names one (provisioning,
syncing, recovering too), and *judged* only while the protection is ``protected``: on agent
hosts an observation that finds the primary healthy renews its lease, and a primary whose
control worker stops looking at it fences itself after the lease (``contracts.agent``). A
watcher that looked away while a cutover's new primary waits for its shadow would take it
down (measured: fenced 2.8 s after a predicted cutover whose rejoin needed longer).

While an outage lasts the request is repeated, first after :data:`RETRY_S`, then at doubling
intervals up to :data:`RETRY_MAX_S`: a refusal may not hold any more (a shadow back in sync, a
protection resumed), and a cutover that failed (its preflight timed out on a hung primary)
may succeed the next time. A node that answers again, or new roles, end the outage. Sight
lost is a new start: after the platform could not be asked, or in a new watcher run, the node
must stay down for ``failover_after_s`` again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from temporalio.client import Client, WorkflowUpdateFailedError

from activities.watching.checks import check_each
from activities.watching.items import Target
from contracts.protection import (
    FAILURE_DETECTION,
    CutoverRequest,
    FailureEvidence,
    ProtectionApi,
)
from infra.observability import count_failover_request
from infra.platform import ALIVE, DOWN, SHIFTING, UNSEEN, FleetObserver, Located

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
"""Time between two observations of a protection's serving node."""
RETRY_S = 5.0
"""First wait before asking again for the same outage."""
RETRY_MAX_S = 60.0
"""Longest wait between two requests for the same outage."""
REQUEST_TIMEOUT_S = 15.0
"""Longest wait for a protection to take a request (its update returns once scheduled): a
protection whose workflow cannot run (no worker, a broken deploy) must not hold the watcher."""


def failover_due(answers: bool, down_since: float | None, now: float,
                 after_s: float) -> tuple[bool, float | None]:
    """Whether a node that ``answers`` (or not) is due for failover, and since when it has
    been silent (``None``: it answers). ``after_s`` 0 never fails over."""
    if answers:
        return False, None
    down_since = down_since if down_since is not None else now
    return after_s > 0 and now - down_since >= after_s, down_since


@dataclass
class _Watch:
    target: Target
    located: Located
    advisory: bool
    down_since: float | None = None
    handled: str | None = None
    """The silent node this outage was already handled for (asked, refused or advised). Kept
    while the protection is not ``protected`` (a cutover that fails returns it there, its node
    still down)."""
    retry_at: float | None = None
    """When to ask again for the handled outage (``None``: never, e.g. advisory)."""
    retry_s: float = RETRY_S
    """The wait after the next request."""
    active: bool = True
    """The router names a serving node: it is observed."""
    judged: bool = True
    """The protection is ``protected``: what is observed may ask for a failover."""


class FailoverMonitor:
    """Watches the serving node of every protection; judges it in phase ``protected``."""

    def __init__(self, client: Client, *, retry_s: float = RETRY_S) -> None:
        self._client = client
        self._retry_s = retry_s
        self._watches: dict[str, _Watch] = {}
        self._observers: Mapping[str, FleetObserver] = {}

    def reset(self, observers: Mapping[str, FleetObserver]) -> None:
        """A new watcher run with its observers: forget every outage (an earlier run's may be
        hours old)."""
        self._watches.clear()
        self._observers = observers

    def track(self, target: Target, located: Located | None, *, fleet_advisory: bool) -> None:
        """Observe ``target``'s serving node while it is located (the module says why) and
        judge it while the protection is ``protected`` (provisioning has no shadow to fail
        over to, a cutover or a recovery is changing the roles). The fleet's advisory mode
        holds for failover too."""
        instance_id = target.instance_id
        watch = self._watches.get(instance_id)
        if located is None:
            if watch is not None:
                watch.active, watch.down_since = False, None
            return
        judged = target.phase == "protected"
        advisory = target.policy.advisory or fleet_advisory
        if watch is None or watch.target.workflow_id != target.workflow_id:
            self._watches[instance_id] = _Watch(target, located, advisory, judged=judged,
                                                retry_s=self._retry_s)
            return
        if not judged:
            watch.down_since = None  # an outage is timed from when it can be acted on
        if watch.advisory and not advisory:
            watch.handled = watch.retry_at = None  # advisory turned off mid-outage: act now
        watch.target, watch.located, watch.advisory = target, located, advisory
        watch.active, watch.judged = True, judged

    def keep_only(self, instance_ids: set[str]) -> None:
        """Forget protections that are gone."""
        for gone in set(self._watches) - instance_ids:
            del self._watches[gone]

    async def run(self, interval_s: float | None = None) -> None:
        """Observe every active protection, each on its own, until cancelled: every
        ``interval_s``, or by default at its platform's ``liveness_interval_s``."""
        platforms = sorted(self._observers) or [""]

        def active(platform: str) -> dict[str, _Watch]:
            return {k: w for k, w in self._watches.items() if w.active
                    and (not platform or w.target.request.spec.platform == platform)}

        await asyncio.gather(*(
            check_each(functools.partial(active, platform), self._check,
                       interval_s or self._interval(platform)) for platform in platforms))

    def _interval(self, platform: str) -> float:
        observer = self._observers.get(platform)
        return observer.liveness_interval_s if observer is not None else CHECK_INTERVAL_S

    async def check(self, instance_id: str) -> None:
        """One observation of ``instance_id``'s serving node, acted on (what :meth:`run` does
        for every active protection each interval)."""
        watch = self._watches.get(instance_id)
        if watch is not None and watch.active:
            await self._check(watch)

    async def _check(self, watch: _Watch) -> None:
        observer = self._observers.get(watch.target.request.spec.platform)
        if observer is None:
            return
        seen = await asyncio.to_thread(observer.liveness, watch.target.request, watch.located)
        if seen is None or not watch.judged:
            return  # nothing new since the last observation, or observed only (see track)
        if seen.state == UNSEEN:
            watch.down_since = watch.handled = None  # whatever happened meanwhile: start over
            return
        if seen.state == SHIFTING:
            watch.down_since = None  # a cutover is moving traffic: nothing to judge
            return
        alive = seen.state == ALIVE
        due, watch.down_since = failover_due(alive, watch.down_since, time.time(),
                                             watch.target.policy.failover_after_s)
        now = time.time()
        if alive:
            watch.handled, watch.retry_at, watch.retry_s = None, None, self._retry_s
        if not due or seen.state != DOWN:
            return
        if watch.handled == seen.key and (watch.retry_at is None or now < watch.retry_at):
            return
        ready = await asyncio.to_thread(observer.standby_ready, watch.target.request,
                                        watch.located)
        if not ready:
            log.debug("%s: serving node down (%s), but the shadow is not ready either",
                      watch.target.instance_id, seen.what)
            return  # asked again at the next observation: the shadow may be restarting
        again = watch.handled == seen.key
        watch.handled = seen.key
        silent_s = now - (watch.down_since or now)
        evidence = FailureEvidence(list(seen.down) or [observer.name], list(seen.up),
                                   watch.down_since or now, seen.confirm)
        await self._act(watch, f"{seen.what} for {silent_s:.0f} s", again, evidence)

    async def _act(self, watch: _Watch, what: str, again: bool,
                   evidence: FailureEvidence) -> None:
        instance = watch.target.instance_id
        # The next request for this outage, unless the node answers or the roles change.
        watch.retry_at = time.time() + watch.retry_s
        watch.retry_s = min(watch.retry_s * 2, RETRY_MAX_S)
        if watch.advisory:
            watch.retry_at = None  # logged once per outage
            log.warning("%s: %s; advisory protection, so no failover "
                        "(shadowshift cutover %s --emergency would move traffic).",
                        instance, what, instance)
            count_failover_request(instance, "advisory")
            return
        reason = f"automatic failover: {what}" + (" (asked again)" if again else "")
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await self._client.get_workflow_handle(watch.target.workflow_id).execute_update(
                    ProtectionApi.request_cutover,
                    CutoverRequest(reason, emergency=True, trigger=FAILURE_DETECTION,
                                   evidence=evidence))
        except WorkflowUpdateFailedError as err:
            # The protection said no (relaxed tier 1, paused...): an operator's call now.
            cause = getattr(err.cause, "message", None) or str(err.cause or err)
            log.warning("%s: automatic failover refused by the protection: %s (asking again in "
                        "%.0f s if it stays down)", instance, cause,
                        (watch.retry_at or time.time()) - time.time())
            count_failover_request(instance, "refused")
            return
        except Exception as err:  # Temporal or the protection unreachable: ask again next time
            watch.handled = watch.retry_at = None
            log.warning("%s: could not ask for a failover: %s", instance,
                        err if str(err) else f"no answer in {REQUEST_TIMEOUT_S:.0f} s")
            return
        log.warning("%s: %s; emergency cutover requested.", instance, reason)
        count_failover_request(instance, "requested")

