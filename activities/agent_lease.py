"""The lease: an agent fences a primary that lost both its control worker and its standby.

The rules (``contracts/agent.py`` states them for both sides):

- A primary's lease is renewed by the control worker (``POST /lease/<node>``, about every
  ``RENEW_INTERVAL_S``) or by a fresh ``reply_time`` of one of its standbys in
  ``pg_stat_replication`` (a promoted standby stops replying).
- When neither happened for ``LEASE_S``, the agent fences the primary.
- The lease is *armed* by the control worker's first renewal and stays armed (a file in the
  server's home, so an agent restart keeps it) until ``DELETE /lease/<node>`` or the server's
  removal. A primary nobody ever renewed is not under protection and is never fenced: an agent
  installed on a fleet before the control worker must not take down the databases it finds.
- Only a *serving primary* (running, no ``standby.signal``, not fenced) can lose its lease.
  A renewal that arrives after the lease of a serving primary expired is refused: a renewal
  extends a live lease, it never revives a dead one. This is what makes a thawed process
  (SIGSTOP, a frozen cgroup) fence before anything else, even when the first thing it does
  after the thaw is to read a renewal that waited in its socket through the freeze, or a
  ``reply_time`` its frozen walsender only now took in.
- Grace, from the moment the agent sees it, for a standby promoted in place (same postmaster
  PID, ``standby.signal`` gone): the control side promoted it and renews it next. A server
  the agent starts itself gets a fresh lease from its start; one started behind the agent's
  back (``pg_ctl start`` by hand) gets none, so an armed former primary restarted by hand is
  fenced at once. After an agent restart every armed lease starts fresh (the predecessor's
  clock is gone); a primary whose agent was down was not protected by a lease meanwhile.

:class:`LeaseBook` is the decision logic alone: given renewals and observations with their
times, which primaries must be fenced now. :class:`LeaseKeeper` runs it: a check every
``CHECK_EVERY_S`` on its own thread (file and ``/proc`` reads only, so a hung server cannot
slow it), one thread per serving primary reading its standbys' ``reply_time`` through
deadline-bounded queries, and the fence itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from activities.agent_catalog import ServerCatalog
from activities.agent_pq import DeadlineSession, QueryError
from activities.agent_server import ARMED_FILE, ManagedServer, Observation, ServerState
from contracts.agent import LEASE_S

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.1
"""Interval of the lease check (the contract's ``LEASE_MARGIN_S`` counts it)."""
REPLY_EVERY_S = 0.2
"""How often a primary's standbys' ``reply_time`` is read (they reply every second)."""
REPLY_TIMEOUT_S = 0.5
"""Deadline of one such read: a primary that cannot answer it gives no evidence."""
REPLY_SQL = (
    "SELECT extract(epoch FROM max(reply_time)) FROM pg_stat_replication"
    " WHERE state IN ('streaming', 'catchup') AND application_name <> 'pg_basebackup'"
)
"""The newest reply of a real standby (a copy's WAL stream proves nothing about promotion)."""


@dataclass(frozen=True)
class Renewal:
    """The answer to one renewal."""

    accepted: bool
    """The lease was extended (or armed)."""
    remaining_s: float | None
    """Seconds left on the lease after it (``None``: not armed)."""
    reason: str = ""
    """Why it was refused."""


@dataclass
class _Lease:
    armed: bool = False
    renewed_at: float | None = None
    last: Observation | None = None
    lost: bool = False
    held: bool = False


class LeaseBook:
    """Which primaries keep their lease: pure logic over monotonic times given by the caller
    (no clock, no I/O, not thread-safe; :class:`LeaseKeeper` serialises the calls)."""

    def __init__(self, lease_s: float = LEASE_S) -> None:
        self.lease_s = lease_s
        self._leases: dict[str, _Lease] = {}

    def restore(self, node: str, now: float) -> None:
        """An armed lease found on disk at start: armed, fresh from ``now``."""
        self._leases[node] = _Lease(armed=True, renewed_at=now)

    def renew(self, node: str, evidence_at: float, now: float, *, arms: bool) -> Renewal:
        """Evidence, observed at ``evidence_at``, that ``node`` may stay writable.

        ``arms``: the control worker's renewal (arms the lease); a standby's reply does not
        arm one. Refused when the lease of a serving primary already expired at ``now``, or
        was lost: then only a fence follows.
        """
        lease = self._leases.get(node)
        if lease is None or not lease.armed:
            if not arms:
                return Renewal(False, None, "not armed")
            lease = self._leases.setdefault(node, _Lease())
            lease.armed = True
        if lease.lost:
            return Renewal(False, None, "lease lost: the server was fenced")
        if lease.last is not None and lease.last.state is ServerState.FENCED:
            return Renewal(False, None, "the server is fenced")
        serving = lease.last is not None and lease.last.state is ServerState.PRIMARY
        if serving and lease.renewed_at is not None and now - lease.renewed_at > self.lease_s:
            lease.lost = True
            return Renewal(False, None, f"lease expired {now - lease.renewed_at:.2f} s after "
                                        "its last renewal: the server is being fenced")
        at = min(evidence_at, now)  # a clock ahead of ours must not buy extra time
        if lease.renewed_at is None or at > lease.renewed_at:
            lease.renewed_at = at
        return Renewal(True, self.remaining(node, now))

    def hold(self, node: str) -> None:
        """The agent itself is starting (or rewinding) ``node``: no check until
        :meth:`grant` (a start takes longer than a lease when it recovers from a crash)."""
        lease = self._leases.get(node)
        if lease is not None:
            lease.held = True

    def grant(self, node: str, now: float) -> None:
        """The agent itself started ``node``: a fresh lease if armed, the loss forgotten, the
        hold released."""
        lease = self._leases.get(node)
        if lease is not None:
            lease.held = False
            if lease.armed:
                lease.renewed_at, lease.lost = now, False

    def disarm(self, node: str) -> None:
        """Stop governing ``node`` (unprotected, or removed)."""
        self._leases.pop(node, None)

    def armed(self, node: str) -> bool:
        """Whether ``node``'s lease is armed."""
        lease = self._leases.get(node)
        return lease is not None and lease.armed

    def armed_nodes(self) -> list[str]:
        """Every node with an armed lease."""
        return [node for node, lease in self._leases.items() if lease.armed]

    def remaining(self, node: str, now: float) -> float | None:
        """Seconds left on ``node``'s lease (``None``: not armed or never renewed)."""
        lease = self._leases.get(node)
        if lease is None or not lease.armed or lease.renewed_at is None:
            return None
        return self.lease_s - (now - lease.renewed_at)

    def since_renewal(self, node: str, now: float) -> float | None:
        """Seconds since ``node``'s last renewal."""
        lease = self._leases.get(node)
        if lease is None or lease.renewed_at is None:
            return None
        return now - lease.renewed_at

    def check(self, observations: Mapping[str, Observation], now: float) -> list[str]:
        """The serving primaries whose lease is gone at ``now``: fence them. ``observations``
        holds what each armed node is now."""
        due = []
        for node, lease in self._leases.items():
            seen = observations.get(node)
            if not lease.armed or lease.held or seen is None:
                continue
            previous, lease.last = lease.last, seen
            if seen.state is not ServerState.PRIMARY:
                continue
            promoted = (previous is not None and previous.state is ServerState.STANDBY
                        and previous.pid == seen.pid)
            if promoted or lease.renewed_at is None:
                lease.renewed_at = now
            if lease.lost or now - lease.renewed_at > self.lease_s:
                lease.lost = True
                due.append(node)
        return due


class UnknownNodeError(LookupError):
    """No server of that name under the agent's data root."""


class LeaseKeeper:
    """Runs the lease for every server under one data root (see the module docstring).

    ``clock`` is monotonic, ``wall`` is Unix time (to place a standby's ``reply_time`` on
    the monotonic clock); both are parameters so a test can drive them.
    """

    def __init__(self, catalog: ServerCatalog, *, lease_s: float = LEASE_S,
                 check_every_s: float = CHECK_EVERY_S,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.book = LeaseBook(lease_s)
        self._check_every_s = check_every_s
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._watchers: dict[str, _ReplyWatcher] = {}
        self._thread = threading.Thread(target=self._run, name="lease-check", daemon=True)

    def start(self) -> None:
        """Restore the armed leases found on disk and start checking."""
        now = self._clock()
        with self._lock:
            for node in self.catalog.nodes():
                if (self.catalog.config.data_root / node / ARMED_FILE).exists():
                    self.book.restore(node, now)
                    log.info("Lease of %s is armed; it runs from now.", node)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking (the servers keep running; nothing fences them any more)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        for watcher in self._watchers.values():
            watcher.stop()
        self._watchers.clear()

    def renew(self, node: str, observed_at: float | None = None) -> Renewal:
        """The control worker's renewal of ``node`` (``observed_at``: Unix time of the probe
        it is based on; default now).

        Raises:
            UnknownNodeError: no server of that name here.
        """
        if self.catalog.find(node) is None:
            raise UnknownNodeError(node)
        now = self._clock()
        at = now if observed_at is None else now - max(0.0, self._wall() - observed_at)
        with self._lock:
            newly_armed = not self.book.armed(node)
            result = self.book.renew(node, at, now, arms=True)
        if result.accepted and newly_armed:
            (self.catalog.config.data_root / node / ARMED_FILE).touch()
            log.info("Lease of %s armed by the control worker.", node)
        if not result.accepted:
            self._wake.set()  # check (and fence) now rather than at the next tick
        return result

    @contextmanager
    def starting(self, node: str) -> Iterator[None]:
        """Around the agent's own start of ``node`` (only a real start: a server that already
        runs gets no fresh lease): no check meanwhile, a fresh lease (if armed) after it,
        whether the start worked or not."""
        with self._lock:
            self.book.hold(node)
        try:
            yield
        finally:
            with self._lock:
                self.book.grant(node, self._clock())

    def disarm(self, node: str) -> bool:
        """Stop governing ``node``; ``False`` when it was not armed."""
        with self._lock:
            was = self.book.armed(node)
            self.book.disarm(node)
        (self.catalog.config.data_root / node / ARMED_FILE).unlink(missing_ok=True)
        if was:
            log.info("Lease of %s disarmed.", node)
        return was

    def remaining(self, node: str) -> float | None:
        """Seconds left on ``node``'s lease (``None``: not armed)."""
        with self._lock:
            return self.book.remaining(node, self._clock())

    def standby_replied(self, node: str, reply_unix: float) -> Renewal:
        """A standby of ``node`` replied at ``reply_unix`` (its ``reply_time``)."""
        now = self._clock()
        at = now - max(0.0, self._wall() - reply_unix)
        with self._lock:
            return self.book.renew(node, at, now, arms=False)

    def check(self) -> list[str]:
        """One check: observe every armed server, fence those whose lease is gone; returns
        them. Called by the loop; a test may call it directly."""
        with self._lock:
            nodes = self.book.armed_nodes()
        servers = {node: self.catalog.find(node) for node in nodes}
        observations = {node: server.observe() if server else Observation(ServerState.ABSENT)
                        for node, server in servers.items()}
        now = self._clock()
        with self._lock:
            gaps = {node: self.book.since_renewal(node, now) for node in nodes}
            due = self.book.check(observations, now)
        for node in due:
            server = servers[node]
            if server is not None:
                self._fence(server, gaps[node], now)
        serving = {node for node, seen in observations.items()
                   if seen.state is ServerState.PRIMARY and node not in due}
        self._sync_watchers({node: servers[node] for node in serving})
        return due

    def _fence(self, server: ManagedServer, gap: float | None, now: float) -> None:
        silence = f"{gap:.2f} s" if gap is not None else "ever"
        log.warning("Lease of %s lost: no renewal from the control worker or a standby for %s."
                    " Fencing it.", server.node, silence)
        started = time.monotonic()
        killed = server.fence(f"lease lost: no renewal for {silence}")
        if killed:
            log.warning("%s fenced in %.0f ms.", server.node, (time.monotonic() - started) * 1000)

    def _sync_watchers(self, serving: Mapping[str, ManagedServer | None]) -> None:
        for node in list(self._watchers):
            watcher = self._watchers[node]
            if node not in serving or not watcher.is_alive():
                watcher.stop()
                del self._watchers[node]
        for node, server in serving.items():
            if node not in self._watchers and server is not None:
                watcher = _ReplyWatcher(self, server)
                self._watchers[node] = watcher
                watcher.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.check()
            except Exception:  # a broken check must not end the lease: log, go on
                log.exception("Lease check failed.")
            self._wake.wait(self._check_every_s)
            self._wake.clear()


class _ReplyWatcher(threading.Thread):
    """Reads one primary's newest standby ``reply_time`` every :data:`REPLY_EVERY_S`."""

    def __init__(self, keeper: LeaseKeeper, server: ManagedServer) -> None:
        super().__init__(name=f"lease-replies-{server.node}", daemon=True)
        self._keeper = keeper
        self._server = server
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop reading (returns at once; the thread ends within one query deadline)."""
        self._stopping.set()

    def run(self) -> None:
        """Read until stopped; a failed read is no evidence, nothing more."""
        session = DeadlineSession(self._server.conninfo)
        try:
            while not self._stopping.wait(REPLY_EVERY_S):
                try:
                    rows = session.query(REPLY_SQL, REPLY_TIMEOUT_S)
                except QueryError:
                    continue
                if rows and rows[0][0] is not None:
                    self._keeper.standby_replied(self._server.node, float(rows[0][0]))
        finally:
            session.close()
