"""The hosts platform: primary and shadow on two hosts, each with a node agent.

Split of the work (``contracts.agent``):

- the **control worker** (this class) owns what is reached over the network or is
  infrastructure: the router (HAProxy on the control machine), the replication slot and the
  tier's settings on the primary (SQL), the Pulumi stack that records them, and every step of
  the cutover (fence, positions, promotion and weights are SQL and runtime-API commands);
- the **agents** own what only the host can do: copy a standby, rewind a former primary,
  destroy a server, look at a server from inside. This class hands those to the workflow as
  :class:`~contracts.agent_tasks.AgentTask` s (``ShadowInfo.agent_task``, :meth:`host_tasks`,
  ``NodeFacts.agent_task``).

A lost primary is cut off twice before its shadow is promoted: the router fences it (weight
0, maintenance, sessions closed), and on namespace hosts the control worker isolates its
PostgreSQL port inside the host's network namespace — what a cloud's API does to a VM (stop
it, swap its security group), and what Patroni's watchdog does to a machine. Whether or not
isolation is available, the emergency cutover waits out the agent's lease before promoting
(``Capabilities.fence_lease_s``), so a live agent has fenced its primary by then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from contracts.agent import LEASE_MARGIN_S, LEASE_S
from contracts.agent_tasks import AgentTask, RewindRequest, SeedRequest
from contracts.shadow import Capabilities, NodeFacts
from contracts.version import VERSION
from infra.errors import InfraError, InvalidRequestError
from infra.hosts import firewall
from infra.hosts.placement import HostsShadowSpec
from infra.hosts.program import hosts_program
from infra.local import fencing
from infra.local.haproxy import HAProxyManager
from infra.local.postgres import PgEndpoint, set_synchronous_standby
from infra.local.probe import postmaster_answers
from infra.local.routed import RoutedPostgres
from infra.local.seed import ensure_slot
from infra.platform import Platform, ProgressCallback, ReplicationStatus, ShadowInfo
from infra.pulumi_engine import StackDriver

log = logging.getLogger(__name__)

ISOLATED = "isolated"
"""``stop_node``'s token when it isolated the node (``start_node`` releases it)."""
REJOIN_STREAM_WAIT_S = 30.0
"""How long ``rejoin`` waits for a rewound former primary to stream from the new one."""


def check_primary(endpoint: PgEndpoint, what: str, replication_user: str) -> None:
    """Refuse a primary that cannot feed a standby: unreachable, ``replication_user`` without
    the right, or ``wal_level``/``max_wal_senders`` too low; with the worker's CA
    (``endpoint.ca_file``), one that serves no TLS or a certificate the CA does not verify.

    Raises:
        InvalidRequestError: naming ``what`` and what to change.
    """
    try:
        with endpoint.connect(timeout_s=5) as conn:
            wal_level, senders = conn.execute(
                "SELECT current_setting('wal_level'), "
                "current_setting('max_wal_senders')::int").fetchone() or ("", 0)
            rights = conn.execute(
                "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = %s",
                (replication_user,)).fetchone()
    except psycopg.OperationalError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if endpoint.ca_file is not None and "does not support SSL" in reason:
            raise InvalidRequestError(
                f"{what} does not offer TLS (ssl=off) and the control worker's "
                f"SHADOWSHIFT_PG_TLS_CA ({endpoint.ca_file}) requires it: give its host's "
                "agent SHADOWSHIFT_PG_TLS_CA, SHADOWSHIFT_PG_TLS_CERT and "
                "SHADOWSHIFT_PG_TLS_KEY (docs/security.md), or unset SHADOWSHIFT_PG_TLS_CA "
                "on the worker") from err
        if endpoint.ca_file is not None and ("SSL error" in reason or "certificate" in reason):
            raise InvalidRequestError(
                f"{what} at {endpoint.host}:{endpoint.port} fails the control worker's "
                f"verify-full against SHADOWSHIFT_PG_TLS_CA ({endpoint.ca_file}): {reason}; "
                "its host's certificate must be issued by that CA and name the host's "
                "address") from err
        raise InvalidRequestError(
            f"{what} is unreachable at {endpoint.host}:{endpoint.port}: {reason}") from err
    if not rights or not rights[0]:
        raise InvalidRequestError(
            f"role {replication_user!r} cannot replicate from the primary; run "
            f"ALTER ROLE {replication_user} REPLICATION (or choose another role)")
    if wal_level not in ("replica", "logical") or senders < 2:
        raise InvalidRequestError("the primary needs wal_level=replica and "
                                  f"max_wal_senders>=2 (it has {wal_level}, {senders})")


def check_primary_tls(endpoint: PgEndpoint, what: str) -> None:
    """Refuse a primary that serves no TLS when replication requires it.

    Raises:
        InvalidRequestError: naming the settings that change it.
    """
    with endpoint.connect(timeout_s=5) as conn:
        row = conn.execute("SELECT current_setting('ssl')").fetchone()
    if not row or row[0] != "on":
        raise InvalidRequestError(
            f"{what} does not offer TLS (ssl=off) and replication requires it: give its "
            "host's agent SHADOWSHIFT_PG_TLS_CA, SHADOWSHIFT_PG_TLS_CERT and "
            "SHADOWSHIFT_PG_TLS_KEY (docs/security.md), or set "
            "SHADOWSHIFT_PG_REPLICATION_SSLMODE=disable on the worker")


class HostsPlatform(RoutedPostgres, Platform):
    """One protected PostgreSQL whose primary and shadow run on two agent hosts."""

    name = "hosts"
    capabilities = Capabilities(rejoin=True, unprotect_when_degraded=True, sync_relax=True,
                                agents=True, reshadow=True,
                                fence_lease_s=LEASE_S + LEASE_MARGIN_S)

    def __init__(self, spec: HostsShadowSpec, driver: StackDriver | None) -> None:
        self.spec = spec
        self._stack_driver = driver
        self.haproxy = HAProxyManager(spec.haproxy_dir)
        self.sessions = fencing.NodeSessions()

    # -- shadow lifecycle ------------------------------------------------------------------

    def provision_shadow(self, on_progress: ProgressCallback | None = None) -> ShadowInfo:
        """``pulumi up`` of what the control worker owns. A standby that does not stream yet
        needs its copy, by its host's agent: the first call checks the primary, makes the
        slot (so the primary keeps the WAL the copy will need) and hands the copy back, to be
        run alongside the second call (``copy_alongside``), whose ``up`` builds the rest
        meanwhile and applies the tier's settings once the standby streams."""
        spec = self.spec
        self._preflight()
        standby = spec.standby_node
        streams = self._streams(standby)
        if not streams and not spec.copy_alongside:
            ensure_slot(self._endpoint(spec.current_primary).conninfo(),
                        spec.slot_for(standby))
            task = AgentTask(spec.host_of(standby), seed=SeedRequest(
                VERSION, spec.server_of(standby), spec.source_for(standby)))
            return ShadowInfo(spec.instance_id, standby, {}, agent_task=task,
                              copy_alongside=True)
        program = self._program(standby_streams=streams, wait_for_stream=not streams)
        result = self.driver.up(spec.stack_name, program, on_progress=on_progress)
        return ShadowInfo(spec.instance_id, standby, result.outputs)

    def _program(self, *, standby_streams: bool,
                 wait_for_stream: bool = False) -> Callable[[], None]:
        """The stack's program for the current roles (see :func:`hosts_program`)."""
        return hosts_program(self.spec, standby_streams=standby_streams,
                             wait_for_stream=wait_for_stream)

    def _preflight(self) -> None:
        """Refuse what retrying cannot fix before anything is created. (The standby's host's
        agent checks its own side, passfile and replication login, when the protection
        greets it: ``AgentHello.stream_from``.)

        Raises:
            InvalidRequestError: the primary is unreachable, cannot replicate, or serves no
                TLS while replication requires it.
        """
        spec = self.spec
        primary = spec.current_primary
        what = f"primary {primary} (host {spec.host_of(primary)})"
        check_primary(self._endpoint(primary), what, spec.replication_user)
        if spec.replication_sslmode != "disable":
            check_primary_tls(self._endpoint(primary), what)

    @property
    def driver(self) -> StackDriver:
        """The Pulumi driver (a platform built without one only reads and routes).

        Raises:
            InvalidRequestError: there is none.
        """
        if self._stack_driver is None:
            raise InvalidRequestError("this HostsPlatform has no Pulumi driver")
        return self._stack_driver

    def destroy_shadow(self, on_progress: ProgressCallback | None = None) -> bool:
        """``pulumi destroy``: tier settings, router entry, slot (the standby's server was
        destroyed by its agent first: ``host_tasks("destroy")``). The router's service stays."""
        spec = self.spec
        return self.driver.destroy(spec.stack_name, self._program(standby_streams=True),
                                   on_progress=on_progress)

    def host_tasks(self, purpose: str, node: str) -> list[AgentTask]:
        """``rejoin``: rewind ``node`` from the serving node; ``retire``: destroy ``node``'s
        server; ``destroy``: destroy the standby's server."""
        spec = self.spec
        if purpose == "destroy":
            standby = spec.standby_node
            return [AgentTask(spec.host_of(standby), destroy=spec.call(standby))]
        self._require_standby_role(node)
        if purpose == "rejoin":
            return [AgentTask(spec.host_of(node), rewind=RewindRequest(
                VERSION, spec.server_of(node), spec.source_for(node)))]
        if purpose == "retire":
            return [AgentTask(spec.host_of(node), destroy=spec.call(node))]
        raise InvalidRequestError(f"no host-local steps for {purpose!r}")

    def inspect_node(self, node: str) -> NodeFacts:
        """Asked of the node's agent: its data lives on its host."""
        spec = self.spec
        return NodeFacts(node, False, "", None,
                         agent_task=AgentTask(spec.host_of(node), inspect=spec.call(node)))

    def rejoin(self, former: str) -> str:
        """Its agent has rewound ``former`` (``host_tasks("rejoin")``): wait until it streams
        from the new primary, lift its isolation, record the roles (``pulumi up`` in place,
        which applies the tier's settings for the new standby)."""
        spec = self.spec
        self._require_standby_role(former)
        deadline = time.monotonic() + REJOIN_STREAM_WAIT_S
        while not self._streams(former):
            if time.monotonic() > deadline:
                raise InfraError(f"{former} does not stream from {spec.current_primary} "
                                 f"{REJOIN_STREAM_WAIT_S:.0f} s after its rewind")
            time.sleep(0.2)
        self._release(former)
        self.driver.up(spec.stack_name, self._program(standby_streams=True))
        return f"rewound by the agent of {spec.host_of(former)}, streaming"

    def retire(self, former: str) -> bool:
        """Its agent has destroyed ``former``'s server (``host_tasks("retire")``): lift its
        isolation and record the roles; the workflow then provisions a fresh shadow there."""
        self._require_standby_role(former)
        self._release(former)
        existed = self.driver.exists(self.spec.stack_name)
        self.driver.up(self.spec.stack_name, self._program(standby_streams=False))
        return existed

    def _require_standby_role(self, node: str) -> None:
        if self.spec.standby_node != node:
            raise InvalidRequestError(f"{node} is not the standby of the roles given "
                                      f"(serving_node {self.spec.current_primary})")

    # -- replication -----------------------------------------------------------------------

    def replication_status(self) -> ReplicationStatus:
        """The standby as the serving primary sees it, with the primary's timing."""
        spec = self.spec
        status = self.replication_between(spec.current_primary, spec.standby_node)
        try:
            row = self.sessions.run(
                self._endpoint(spec.current_primary),
                "SELECT extract(epoch FROM replay_lag), current_setting("
                "'synchronous_standby_names') FROM (SELECT 1) AS one LEFT JOIN "
                "pg_stat_replication r ON r.application_name = %s", (spec.standby_node,))
        except psycopg.Error:
            return status
        lag_s, names = row if row else (None, "")
        status.lag_seconds = float(lag_s) if lag_s is not None else None
        status.degraded = spec.tier == 1 and not names
        return status

    def _streams(self, standby: str) -> bool:
        try:
            return self.replication_between(self.spec.other_node(standby),
                                            standby).state == "streaming"
        except psycopg.Error:
            return False

    def relax_sync(self) -> None:
        """Tier 1 degraded mode (the mark first, so a relax of ours is always known)."""
        self._relaxed_mark.parent.mkdir(parents=True, exist_ok=True)
        self._relaxed_mark.write_text("relaxed by the tier-1 supervisor\n")
        with self._endpoint(self.spec.current_primary).connect() as conn:
            set_synchronous_standby(conn, None)

    def restore_sync(self) -> None:
        """Tier 1: require the shadow's acknowledgement again."""
        with self._endpoint(self.spec.current_primary).connect() as conn:
            set_synchronous_standby(conn, self.spec.standby_node)
        self._relaxed_mark.unlink(missing_ok=True)

    def relaxed_by_supervisor(self) -> bool:
        """A mark in the control worker's state directory."""
        return self._relaxed_mark.exists()

    @property
    def _relaxed_mark(self) -> Path:
        return self.spec.state_dir / "instances" / self.spec.instance_id / "sync-relaxed"

    # -- the emergency's cut-off ------------------------------------------------------------

    def stop_node(self, node: str) -> str | None:
        """Cut a lost primary off. On namespace hosts: isolate its port (no client, router or
        probe reaches it, established sessions included), which needs nothing from the node,
        so a frozen one costs no probe's wait. On other hosts: fence it over SQL if it still
        answers quickly; its agent's lease fences it in any case (``fence_lease_s``)."""
        netns = self.spec.netns_of(node)
        if netns is not None:
            firewall.isolate_port(netns, self.spec.port_of(node))
            return ISOLATED
        endpoint = self._endpoint(node)
        if postmaster_answers(endpoint.host, endpoint.port):
            try:
                fencing.fence_server(self.sessions, endpoint)
            except psycopg.Error as err:  # it stopped answering meanwhile: the lease decides
                log.info("Fencing %s over SQL failed (%s); its agent's lease fences it",
                         node, err)
        return None

    def start_node(self, node: str, token: str) -> None:
        """Undo :meth:`stop_node` (compensation): lift the isolation."""
        if token == ISOLATED:
            self._release(node)

    def _release(self, node: str) -> None:
        netns = self.spec.netns_of(node)
        if netns is not None:
            firewall.release_port(netns, self.spec.port_of(node))

    # -- the rest --------------------------------------------------------------------------

    def nodes(self) -> tuple[str, str]:
        """``(original primary, shadow)``."""
        return self.spec.primary_node, self.spec.shadow_node

    def probe_address(self, node: str) -> tuple[str, int] | None:
        """The node's host address and port."""
        endpoint = self._endpoint(node)
        return endpoint.host, endpoint.port

    def close(self) -> None:
        """Close the cached sessions."""
        self.sessions.close()

    @property
    def service(self) -> str:
        """The instance's router service."""
        return self.spec.instance_id

    @property
    def router_endpoint(self) -> PgEndpoint:
        """HAProxy's frontend on the control machine."""
        return PgEndpoint(port=self.spec.router_port)

    def _endpoint(self, node: str) -> PgEndpoint:
        return self.spec.endpoint_of(node)
