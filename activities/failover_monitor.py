"""Automatic emergency failover of a primary that stops answering.

The failure model predicts; a ``kill -9``, a power cut or a hung server give it nothing to
see. As every HA manager does for a dead leader (Patroni after its leader key's TTL), the
fleet watcher checks the node each protection's router serves, and when it has been down for
the protection's ``policy.failover_after_s`` while the shadow is ready, asks the protection
for an emergency cutover (``request_cutover`` with ``emergency``).

- Local protections: the serving PostgreSQL is probed every second; the shadow must answer
  as a standby.
- AWS protections: EC2's state of the serving instance, read at each discovery (every
  ``discovery_interval_s``, 30 s by default, with the calls discovery makes anyway): anything
  but ``running`` (stopping, stopped, shutting down, terminated) is down, and the shadow's
  instance must be running. A database that hangs on a running instance is the metrics'
  and EC2 status checks' business (reported as risk), not this rule's.

The protection's own checks still decide: it refuses while paused, during another
cutover, without a healthy shadow, or while tier 1 is relaxed (the shadow may lack
acknowledged writes; an operator must force that), and the cutover fences the dead node at
the router before anything is promoted. An advisory protection is only told in the log.

Locally, "not answering" is what ``pg_isready`` calls no response or rejecting: no connection, a
timeout, or a server that takes no connections now (starting up, shutting down, recovering
from a crash). A server that answers with an error (a wrong password, a missing database) is
up: a misconfiguration is no reason to fail over. One request per outage: the next one needs
the node to answer again or the roles to change, so a cutover that failed is not asked for again
(an operator's call). Sight lost is a new start: after a gap in the AWS observations or a new
watcher run, the node must stay down for ``failover_after_s`` again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import pq
from temporalio.client import Client, WorkflowUpdateFailedError

from activities.local_checks import check_each
from activities.watch_aws import AwsTarget
from activities.watch_local import serving_port
from infra.local.haproxy import HAProxyManager
from infra.local.postgres import PgEndpoint
from infra.local.spec import LocalShadowSpec
from workers.observability import count_failover_request
from workflows.protection_spec import FAILOVER_AFTER_S
from workflows.protection_state import CutoverRequest

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
"""Time between two probes of a protection's serving node."""
PROBE_TIMEOUT_S = 2
"""libpq's connect timeout for a probe (its smallest useful value)."""
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


def answers(endpoint: PgEndpoint) -> bool:
    """Whether the server at ``endpoint`` takes connections: libpq's ``PQping``, as
    ``pg_isready`` uses it, so a server that refuses our credentials still counts as up."""
    result = pq.PGconn.ping(endpoint.conninfo(connect_timeout=PROBE_TIMEOUT_S).encode())
    if result == pq.Ping.NO_ATTEMPT:  # our connection string is wrong, not the server
        log.warning("Cannot probe %s: invalid connection parameters", endpoint.port)
        return True
    return result == pq.Ping.OK


def is_standby(endpoint: PgEndpoint) -> bool:
    """Whether the server at ``endpoint`` answers and is in recovery (a shadow to promote)."""
    try:
        with psycopg.connect(endpoint.conninfo(connect_timeout=PROBE_TIMEOUT_S),
                             autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])


@dataclass
class _Target:
    workflow_id: str
    instance_id: str
    after_s: float
    advisory: bool
    spec: LocalShadowSpec | None = None
    """What to probe, for a local protection (AWS ones are observed at discovery)."""
    down_since: float | None = None
    handled: str | None = None
    """The silent node this outage was already handled for (asked, refused or advised): a
    local port, or an EC2 instance id. Kept while the protection is not ``protected`` (a
    cutover that fails returns it there, its node still down)."""
    active: bool = True
    """The protection is ``protected``: its node is judged."""


class FailoverMonitor:
    """Watches the serving node of every local or AWS protection in phase ``protected``."""

    def __init__(self, client: Client, state_dir: Path) -> None:
        self._client = client
        self._haproxy = HAProxyManager(state_dir / "haproxy")
        self._targets: dict[str, _Target] = {}

    def reset(self) -> None:
        """Forget everything (a new watcher run: what an earlier one saw may be hours old)."""
        self._targets.clear()

    def unobserved(self, instance_ids: set[str]) -> None:
        """AWS could not be asked about these protections: whatever happened meanwhile, their
        outages start over (a node seen down before the gap must stay down ``failover_after_s``
        after it, and a node handled before it may have come back and gone down again)."""
        for instance_id in instance_ids:
            target = self._targets.get(instance_id)
            if target is not None:
                target.down_since = target.handled = None

    def track(self, workflow_id: str, spec: LocalShadowSpec, phase: str,
              policy: dict[str, object]) -> None:
        """Probe ``spec``'s serving node while the protection is ``protected``; else not.

        Other phases have their own course: provisioning has no shadow to fail over to, a
        cutover or a recovery is changing the roles."""
        target = self._update(workflow_id, spec.instance_id, phase, policy)
        if target is not None:
            target.spec = spec

    async def observe_aws(self, workflow_id: str, located: AwsTarget, phase: str,
                          policy: dict[str, object]) -> None:
        """Take one discovery's EC2 states of an AWS protection, and act on them."""
        target = self._update(workflow_id, located.spec.instance_id, phase, policy)
        if target is None:
            return
        alive = located.running
        silent = None if alive else located.ec2_instance_id
        await self._decide(target, alive, silent, self._ready(located.standby_running),
                           f"EC2 instance {located.ec2_instance_id} has not been running")

    def _update(self, workflow_id: str, instance_id: str, phase: str,
                policy: dict[str, object]) -> _Target | None:
        """The target of a ``protected`` protection, with its policy; ``None`` in other phases
        (their target, if any, is judged no more, but keeps the outage it handled)."""
        target = self._targets.get(instance_id)
        if phase != "protected":
            if target is not None:
                target.active, target.down_since = False, None
            return None
        after_s = float(policy.get("failover_after_s", FAILOVER_AFTER_S))  # type: ignore[arg-type]
        advisory = policy.get("advisory") is True
        if target is None or target.workflow_id != workflow_id:
            target = self._targets[instance_id] = _Target(workflow_id, instance_id, after_s,
                                                          advisory)
        else:
            if target.advisory and not advisory:
                target.handled = None  # advisory turned off mid-outage: act on it now
            target.after_s, target.advisory, target.active = after_s, advisory, True
        return target

    def keep_only(self, instance_ids: set[str]) -> None:
        """Forget protections that are gone."""
        for gone in set(self._targets) - instance_ids:
            del self._targets[gone]

    async def run(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Probe every local target each ``interval_s``, each on its own, until cancelled."""
        await check_each(
            lambda: {k: t for k, t in self._targets.items() if t.spec is not None and t.active},
            self._check, interval_s)

    async def _check(self, target: _Target) -> None:
        spec = target.spec
        assert spec is not None  # run() checks local targets only
        port = await asyncio.to_thread(serving_port, self._haproxy, spec)
        if port is None:  # no traffic, or traffic on both: a cutover is shifting it
            target.down_since = None
            return
        alive = await asyncio.to_thread(answers, PgEndpoint(port=port))
        shadow_port = spec.shadow_port if port == spec.primary_port else spec.primary_port

        async def shadow_is_standby() -> bool:
            return await asyncio.to_thread(is_standby, PgEndpoint(port=shadow_port))

        await self._decide(target, alive, None if alive else str(port), shadow_is_standby,
                           f"port {port} has not answered")

    @staticmethod
    def _ready(value: bool) -> Callable[[], Awaitable[bool]]:
        """``standby_ready`` for a readiness already known (AWS: from the same discovery)."""
        async def ready() -> bool:
            return value
        return ready

    async def _decide(self, target: _Target, alive: bool, silent: str | None,
                      standby_ready: Callable[[], Awaitable[bool]], what: str) -> None:
        """Apply the rule to one observation of the serving node (``silent``: its key when
        down); ``standby_ready`` is asked only when a failover is due."""
        due, target.down_since = failover_due(alive, target.down_since, time.time(),
                                              target.after_s)
        if alive:
            target.handled = None
        if not due or target.handled == silent:
            return
        if not await standby_ready():
            log.debug("%s: serving node down (%s), but the shadow is not ready either",
                      target.instance_id, what)
            return  # asked again at the next observation: the shadow may be restarting
        target.handled = silent
        silent_s = time.time() - (target.down_since or time.time())
        if target.advisory:
            log.warning("%s: %s for %.0f s; advisory protection, so no failover "
                        "(shadowshift cutover %s --emergency would move traffic).",
                        target.instance_id, what, silent_s, target.instance_id)
            count_failover_request(target.instance_id, "advisory")
            return
        await self._request(target, f"automatic failover: {what} for {silent_s:.0f} s")

    async def _request(self, target: _Target, reason: str) -> None:
        instance = target.instance_id
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await self._client.get_workflow_handle(target.workflow_id).execute_update(
                    "request_cutover", CutoverRequest(reason, emergency=True))
        except WorkflowUpdateFailedError as err:
            # The protection said no (relaxed tier 1, paused...): an operator's call now.
            cause = getattr(err.cause, "message", None) or str(err.cause or err)
            log.warning("%s: automatic failover refused by the protection: %s", instance, cause)
            count_failover_request(instance, "refused")
            return
        except Exception as err:  # Temporal or the protection unreachable: ask again next time
            target.handled = None
            log.warning("%s: could not ask for a failover: %s", instance,
                        err if str(err) else f"no answer in {REQUEST_TIMEOUT_S:.0f} s")
            return
        log.warning("%s: %s; emergency cutover requested.", instance, reason)
        count_failover_request(instance, "requested")
