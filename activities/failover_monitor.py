"""Automatic emergency failover of a local primary that stops answering.

The failure model predicts; a ``kill -9``, a power cut or a hung server give it nothing to
see. As every HA manager does for a dead leader (Patroni after its leader key's TTL), the
fleet watcher probes the node each local protection's router serves, every second, and when
it has not answered for the protection's ``policy.failover_after_s`` while the shadow answers
as a standby, asks the protection for an emergency cutover (``request_cutover`` with
``emergency``). The protection's own checks still decide: it refuses while paused, during
another cutover, without a healthy shadow, or while tier 1 is relaxed (the shadow may lack
acknowledged writes; an operator must force that), and the cutover fences the dead node at
the router before anything is promoted. An advisory protection is only told in the log.

"Not answering" is what ``pg_isready`` calls no response or rejecting: no connection, a
timeout, or a server that takes no connections now (starting up, shutting down, recovering
from a crash). A server that answers with an error (a wrong password, a missing database) is
up: a misconfiguration is no reason to fail over. One request per outage: the next one needs
the node to answer again or the roles to change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import pq
from temporalio.client import Client, WorkflowUpdateFailedError

from activities.local_checks import check_each
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
    spec: LocalShadowSpec
    after_s: float
    advisory: bool
    down_since: float | None = None
    handled_port: int | None = None
    """The silent node this outage was already handled for (asked, refused or advised)."""


class FailoverMonitor:
    """Probes the serving node of every local protection in phase ``protected``."""

    def __init__(self, client: Client, state_dir: Path) -> None:
        self._client = client
        self._haproxy = HAProxyManager(state_dir / "haproxy")
        self._targets: dict[str, _Target] = {}

    def track(self, workflow_id: str, spec: LocalShadowSpec, phase: str,
              policy: dict[str, object]) -> None:
        """Watch ``spec``'s serving node while the protection is ``protected``; else not.

        Other phases have their own course: provisioning has no shadow to fail over to, a
        cutover or a recovery is changing the roles."""
        if phase != "protected":
            self._targets.pop(spec.instance_id, None)
            return
        after_s = float(policy.get("failover_after_s", FAILOVER_AFTER_S))  # type: ignore[arg-type]
        advisory = policy.get("advisory") is True
        target = self._targets.get(spec.instance_id)
        if target is None or target.workflow_id != workflow_id:
            self._targets[spec.instance_id] = _Target(workflow_id, spec, after_s, advisory)
        else:
            if target.advisory and not advisory:
                target.handled_port = None  # advisory turned off mid-outage: act on it now
            target.after_s, target.advisory = after_s, advisory

    def keep_only(self, instance_ids: set[str]) -> None:
        """Forget protections that are gone."""
        for gone in set(self._targets) - instance_ids:
            del self._targets[gone]

    async def run(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Probe every target each ``interval_s``, each on its own, until cancelled."""
        await check_each(lambda: dict(self._targets), self._check, interval_s)

    async def _check(self, target: _Target) -> None:
        spec = target.spec
        port = await asyncio.to_thread(serving_port, self._haproxy, spec)
        if port is None:  # no traffic, or traffic on both: a cutover is shifting it
            target.down_since = None
            return
        alive = await asyncio.to_thread(answers, PgEndpoint(port=port))
        due, target.down_since = failover_due(alive, target.down_since, time.time(),
                                              target.after_s)
        if alive:
            target.handled_port = None
        if not due or target.handled_port == port:
            return
        shadow_port = spec.shadow_port if port == spec.primary_port else spec.primary_port
        if not await asyncio.to_thread(is_standby, PgEndpoint(port=shadow_port)):
            log.debug("%s: serving node silent, but no standby answers on %s either",
                      spec.instance_id, shadow_port)
            return  # asked again at the next probe: the shadow may be restarting
        target.handled_port = port
        silent_s = time.time() - (target.down_since or time.time())
        if target.advisory:
            log.warning("%s: port %s has not answered for %.0f s; advisory protection, so no "
                        "failover (shadowshift cutover %s --emergency would move traffic).",
                        spec.instance_id, port, silent_s, spec.instance_id)
            count_failover_request(spec.instance_id, "advisory")
            return
        await self._request(target, port, silent_s)

    async def _request(self, target: _Target, port: int, silent_s: float) -> None:
        instance = target.spec.instance_id
        reason = f"automatic failover: port {port} has not answered for {silent_s:.0f} s"
        try:
            await self._client.get_workflow_handle(target.workflow_id).execute_update(
                "request_cutover", CutoverRequest(reason, emergency=True))
        except WorkflowUpdateFailedError as err:
            # The protection said no (relaxed tier 1, paused...): an operator's call now.
            cause = getattr(err.cause, "message", None) or str(err.cause or err)
            log.warning("%s: automatic failover refused by the protection: %s", instance, cause)
            count_failover_request(instance, "refused")
            return
        except Exception as err:  # Temporal unreachable: ask again at the next probe
            target.handled_port = None
            log.warning("%s: could not ask for a failover: %s", instance, err)
            return
        log.warning("%s: %s; emergency cutover requested.", instance, reason)
        count_failover_request(instance, "requested")
