"""The node agent's activities: host-local work on the PostgreSQL servers of one host.

:class:`HostAgentActivities` implements ``contracts.agent.AgentActivities`` for the servers
under the agent's data root (``activities/agent_server.py`` describes their files). All are
synchronous (the server tools and drivers block) and run on the agent's thread pool; the long
ones (``seed_standby``, ``rewind_as_standby``) heartbeat their progress.

Every one is idempotent, because Temporal retries and the agent can die at any line:

- ``ensure_primary`` initialises into ``data.initdb`` and renames it into place, so a
  ``data`` folder is always complete; a running primary is left running.
- ``seed_standby`` copies into ``data.partial`` under a file lock (``infra.local.seed``); a
  copy whose agent died is killed and redone by the next attempt, a finished one is adopted.
- ``rewind_as_standby`` returns at once for a server that already streams from the source.
- ``fence_server``, ``stop_server``, ``destroy_server`` are no-ops the second time.

Errors follow ``activities/errors.py``: ``InvalidRequest`` (not retried, the message says
what to change) for what retrying cannot fix, anything else is retried. A caller of another
ShadowShift version is refused with ``contracts.agent.VERSION_MISMATCH``, not retried.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import psycopg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import agent_pgconf as pgconf
from activities.agent_catalog import ServerCatalog
from activities.agent_security import check_stream_from, install_credentials, source_conninfo
from activities.agent_server import STOPPED_FILE, AgentConfig, ManagedServer
from activities.agent_steps import Progress, initdb, kill_orphan_copies, read_text
from activities.errors import translated_errors
from contracts.agent import (
    VERSION_MISMATCH,
    AgentActivities,
    AgentCall,
    AgentHello,
    AgentInfo,
    EnsurePrimaryRequest,
    LocalView,
    PrimarySource,
    RewindRequest,
    SeedRequest,
    ServerInfo,
)
from contracts.shadow import NodeFacts
from contracts.version import VERSION
from infra.errors import InfraError, InvalidRequestError
from infra.local.postgres import pg_bin, run_server_tool
from infra.local.seed import ensure_slot, seed_data_dir, seed_seconds

PROBE_TIMEOUT_S = 0.3
"""Deadline of ``probe_local``'s query: the failure detector's vote, picked up within
``PROBE_PICKUP_S`` (1 s), must come back well inside it even from a hung server."""
STREAMING_TIMEOUT_S = 60.0
"""How long a freshly started standby may take to stream (beyond it: retried)."""
REWIND_REFUSALS = (
    "wal_log_hints",
    "could not find previous WAL record",
    "different systems",
    "could not find common ancestor",
    "is not a valid data directory",
)
"""``pg_rewind`` failures that no retry fixes: the node must be copied again."""


class LeaseControl(Protocol):
    """What the activities need of the lease (``LeaseKeeper`` provides it)."""

    def starting(self, node: str) -> AbstractContextManager[None]:
        """Around the agent's own start of ``node``: a fresh lease after it."""
        ...

    def disarm(self, node: str) -> bool:
        """Stop governing ``node``."""
        ...


class NoLease:
    """A :class:`LeaseControl` for an agent without a lease (tests of the activities alone)."""

    @contextmanager
    def starting(self, node: str) -> Iterator[None]:
        """Nothing to hold."""
        yield

    def disarm(self, node: str) -> bool:
        """Nothing to disarm."""
        return False


class HostAgentActivities(AgentActivities):
    """The agent's activities for the servers under ``config.data_root``."""

    def __init__(self, config: AgentConfig, leases: LeaseControl | None = None,
                 catalog: ServerCatalog | None = None) -> None:
        self.config = config
        self.catalog = catalog or ServerCatalog(config)
        self._leases = leases or NoLease()

    @activity.defn
    def hello(self, request: AgentHello) -> AgentInfo:
        """Who the agent is and how much room its data filesystem has; with
        ``stream_from``, first whether this host's standbys could stream from there (its
        passfile, its CA, a replication login), before anything is created."""
        self._require_version(request.version)
        if request.stream_from is not None:
            with translated_errors():
                check_stream_from(self.config, request.stream_from)
        self.config.data_root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.config.data_root).free
        return AgentInfo(host=self.config.host, version=VERSION, address=self.config.address,
                         free_bytes=free)

    @activity.defn
    def ensure_primary(self, request: EnsurePrimaryRequest) -> ServerInfo:
        """Initialise the server when it has no cluster (``wal_log_hints`` on, listening on
        the host's address and localhost, trusting the agent's network), then start it.
        Refuses a fenced server, a standby's data and a ``data`` folder that is no cluster."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.server(request.server)
            with self.catalog.lock(server.node):
                server.record(request.server.instance_id)
                fence = server.fence_record()
                if fence is not None:
                    raise InvalidRequestError(
                        f"{server.node} is fenced ({fence.reason}): start_server clears the "
                        "fence, rewind_as_standby makes it a standby")
                self._refuse_foreign(server)
                renewed = install_credentials(server, None)  # its TLS files, before a start
                if not server.is_cluster():
                    initdb(server, request.settings)
                    activity.logger.info("%s initialised in %s.", server.node, server.data_dir)
                elif server.has_standby_signal():
                    raise InvalidRequestError(
                        f"{server.node} holds a standby's data: promote it through the "
                        "platform, or destroy_server it first")
                else:
                    changed = pgconf.write_primary_settings(server, request.settings) or renewed
                    changed = pgconf.write_hba(server) or changed
                    if changed and server.running():
                        server.pg.reload()
                if not server.running():
                    # Only a real start renews the lease: a late ensure_primary must not keep
                    # alive a primary whose lease ran out.
                    with self._leases.starting(server.node):
                        server.start()
                return server.info()

    @activity.defn
    def seed_standby(self, request: SeedRequest) -> ServerInfo:
        """Copy the standby from its primary with ``pg_basebackup`` (heartbeating the bytes
        copied), write its standby settings, start it and wait until it streams."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.server(request.server)
            progress = Progress(server)
            with progress.beating(), self._locked(server, progress):
                if not server.streams_from(request.source):
                    check_stream_from(self.config, request.source)  # before anything exists
                server.record(request.server.instance_id)
                self._prepare_seed(server)
                install_credentials(server, request.source.user)
                if not server.streams_from(request.source):
                    server.check_port()
                    if not server.is_cluster():
                        self._copy(server, request.source, progress)
                    self._start_standby(server, request.source, progress)
                return server.info(seed_seconds(server.home))

    @activity.defn
    def inspect_server(self, request: AgentCall) -> NodeFacts:
        """Whether the server answers, where its data lives and whether ``pg_rewind`` could
        rewind it (read from ``pg_control``, so known even while it is down)."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.server(request.server)
            answers = server.local_view(PROBE_TIMEOUT_S).answers
            if not server.is_cluster():
                return NodeFacts(server.node, answers, "", False,
                                 f"{server.node} has no cluster under {server.home}: seed it")
            blocker = server.rewind_blocker()
            return NodeFacts(server.node, answers, str(server.home), blocker is None,
                             blocker or "")

    @activity.defn
    def rewind_as_standby(self, request: RewindRequest) -> str:
        """Stop the former primary (SIGKILL if it hangs), ``pg_rewind`` it from the new
        primary, start it as that primary's standby and wait until it streams; returns what
        was done. Clears a fence: as a standby it cannot take writes."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.server(request.server)
            progress = Progress(server)
            with progress.beating(), self._locked(server, progress):
                server.record(request.server.instance_id)
                if server.fence_record() is None and server.streams_from(request.source):
                    return "already streaming"
                if not server.is_cluster():
                    raise InvalidRequestError(
                        f"{server.node} has no cluster to rewind: seed it instead")
                blocker = server.rewind_blocker()
                if blocker is not None:
                    raise InvalidRequestError(blocker)
                server.check_port()
                check_stream_from(self.config, request.source)  # before it is stopped
                install_credentials(server, request.source.user)
                with self._leases.starting(server.node):
                    progress.step = "stopping"
                    server.stop()
                    server.clear_fence()
                    # pg_rewind first finishes crash recovery in single-user mode, which
                    # refuses standby mode; the standby settings are written after it.
                    (server.data_dir / "standby.signal").unlink(missing_ok=True)
                    started = time.monotonic()
                    progress.step = "rewinding"
                    done = self._rewind(server, request.source)
                    pgconf.write_standby_settings(server, request.source)
                    pgconf.write_hba(server)
                    progress.step = "starting"
                    server.start()
                    self._wait_streaming(server, request.source, progress)
                activity.logger.info("%s is the standby of %s:%d (%s).", server.node,
                                     request.source.address, request.source.port, done)
                return f"{done} in {time.monotonic() - started:.2f}s"

    @activity.defn
    def start_server(self, request: AgentCall) -> ServerInfo:
        """Start the server, clearing a fence (what the fence added is removed first)."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.server(request.server)
            with self.catalog.lock(server.node):
                if not server.is_cluster():
                    raise InvalidRequestError(
                        f"{server.node} has no cluster: ensure_primary or seed_standby first")
                (server.home / STOPPED_FILE).unlink(missing_ok=True)
                fenced = server.fence_record() is not None
                if server.running() and not fenced:
                    return server.info()  # running: no start, so no fresh lease either
                server.check_port()
                with self._leases.starting(server.node):
                    if fenced and server.running():
                        # Started by hand despite the fence: it came up as a standby (the
                        # fence's standby.signal); restart it as what it was.
                        server.stop()
                    if server.clear_fence():
                        activity.logger.info("Fence of %s cleared.", server.node)
                    server.start()
                return server.info()

    @activity.defn
    def stop_server(self, request: AgentCall) -> bool:
        """Stop the server (fast, else immediate, else SIGKILL); ``False`` when it was not
        running. A fence stays."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.server(request.server)
            with self.catalog.lock(server.node):
                if server.is_cluster():  # asked to be down: the standby watchdog keeps it so
                    (server.home / STOPPED_FILE).write_text("stopped on request\n")
                return server.stop()

    @activity.defn
    def fence_server(self, request: AgentCall) -> bool:
        """SIGKILL the postmaster and its children (a hung or SIGSTOPped server too) and keep
        it down until ``start_server``; returns whether it was running. Takes no node lock:
        a fence must not wait behind a long task."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.server(request.server)
            killed = server.fence("fenced on request")
            activity.logger.warning("%s fenced on request (%s).", server.node,
                                    "killed" if killed else "it was not running")
            return killed

    @activity.defn
    def destroy_server(self, request: AgentCall) -> bool:
        """Kill the server and delete its home; ``False`` when there was none. Its slot on
        its primary is the control side's to drop (the agent does not know the primary)."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.find(request.server.node) or self.catalog.server(
                request.server)
            with self.catalog.lock(server.node):
                if not server.home.exists():
                    return False
                server.kill_tree()
                kill_orphan_copies(server.home)
                self._leases.disarm(server.node)
                shutil.rmtree(server.home)
                activity.logger.info("%s destroyed.", server.node)
                return True

    @activity.defn
    def probe_local(self, request: AgentCall) -> LocalView:
        """The server as seen from inside its host, within :data:`PROBE_TIMEOUT_S` (a
        SIGSTOPped postmaster is told from ``/proc`` without even connecting)."""
        self._require_version(request.version)
        with translated_errors():
            server = self.catalog.server(request.server)
            return server.local_view(PROBE_TIMEOUT_S)

    # -- steps ---------------------------------------------------------------------------

    @contextmanager
    def _locked(self, server: ManagedServer, progress: Progress) -> Iterator[None]:
        """The node's lock. A retry that arrives while the attempt it replaces still runs
        here (its heartbeats were late) waits for it, heartbeating, then finds its work
        done."""
        progress.step = "waiting for another task on this server"
        with self.catalog.lock(server.node):
            progress.step = "working"
            yield

    def _require_version(self, version: str) -> None:
        if version != VERSION:
            raise ApplicationError(
                f"the caller runs ShadowShift {version} and the agent of {self.config.host} "
                f"runs {VERSION}: run the same version on both sides",
                {"caller": version, "agent": VERSION},
                type=VERSION_MISMATCH, non_retryable=True)

    @staticmethod
    def _refuse_foreign(server: ManagedServer) -> None:
        if server.foreign_data():
            raise InvalidRequestError(
                f"{server.data_dir} holds files but no PostgreSQL cluster: move them away "
                "(or destroy_server) and ask again")

    def _prepare_seed(self, server: ManagedServer) -> None:
        """Refuse what a copy must not overwrite; clear a standby's own fence."""
        fence = server.fence_record()
        if fence is not None and fence.added_standby_signal:
            raise InvalidRequestError(
                f"{server.node} is a fenced former primary: rewind_as_standby it, or "
                "destroy_server it before seeding a fresh copy")
        self._refuse_foreign(server)
        if server.is_cluster() and not server.has_standby_signal():
            raise InvalidRequestError(
                f"{server.node} holds a primary's data: rewind_as_standby it, or "
                "destroy_server it before seeding")
        if fence is not None:
            server.clear_fence()  # a fenced standby: asked to stream again

    def _copy(self, server: ManagedServer, source: PrimarySource, progress: Progress) -> None:
        """The full copy, through ``infra.local.seed`` (lock, ``data.partial``, rename)."""
        kill_orphan_copies(server.home)
        props = {
            "home": str(server.home), "port": server.port, "slot": source.slot,
            "primary_conninfo": source_conninfo(server, source, replication=False),
            "replication_conninfo": source_conninfo(server, source, replication=True),
            "compression": "none", "tier": 2, "standby_name": server.node, "archive_dir": "",
        }
        progress.step = "copying"
        progress.copying = True
        try:
            seed_data_dir(props)
        finally:
            progress.copying = False
        activity.logger.info("%s copied from %s:%d in %.2f s.", server.node, source.address,
                             source.port, seed_seconds(server.home) or 0.0)

    def _start_standby(self, server: ManagedServer, source: PrimarySource,
                       progress: Progress) -> None:
        before = read_text(server.data_dir / "postgresql.auto.conf")
        pgconf.write_standby_settings(server, source)
        changed = pgconf.write_hba(server)
        changed = read_text(server.data_dir / "postgresql.auto.conf") != before or changed
        progress.step = "starting"
        with self._leases.starting(server.node):
            if changed and server.running():
                server.stop()  # listen addresses and the source need a restart
            server.start()
        self._wait_streaming(server, source, progress)

    @staticmethod
    def _wait_streaming(server: ManagedServer, source: PrimarySource,
                        progress: Progress) -> None:
        progress.step = "waiting for it to stream"
        deadline = time.monotonic() + STREAMING_TIMEOUT_S
        while not server.streams_from(source):
            if time.monotonic() > deadline:
                raise InfraError(
                    f"{server.node} did not stream from {source.address}:{source.port} "
                    f"within {STREAMING_TIMEOUT_S:.0f} s; see {server.pg.log_file}")
            time.sleep(0.05)

    def _rewind(self, server: ManagedServer, source: PrimarySource) -> str:
        """``pg_rewind`` from ``source`` after making sure its slot exists and its timeline is
        in ``pg_control`` (a promoted server writes it at its first checkpoint)."""
        conninfo = source_conninfo(server, source, replication=False)
        try:
            if source.slot:
                ensure_slot(conninfo, source.slot)
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                conn.execute("CHECKPOINT")
        except psycopg.Error as err:
            raise InfraError(f"cannot reach the new primary {source.address}:"
                             f"{source.port}: {err}") from err
        try:
            output = run_server_tool([pg_bin("pg_rewind"), "-D", str(server.data_dir),
                                      "--source-server", conninfo])
        except InfraError as err:
            if any(reason in str(err) for reason in REWIND_REFUSALS):
                raise InvalidRequestError(
                    f"{server.node} cannot be rewound from {source.address}:{source.port}: "
                    f"seed it again (destroy_server, then seed_standby). pg_rewind said: "
                    f"{err}") from err
            raise
        return "no rewind required" if "no rewind required" in output else "rewound"
