"""The PostgreSQL servers one node agent manages, as files and processes under its data root.

Each server lives in ``<data_root>/<node>/`` (its *home*)::

    data/             the cluster (appears only complete: initdb and copies go elsewhere first)
    server.log        pg_ctl's log
    server.json       instance id, node and port, so the lease and HTTP routes find it by name
    fenced            the fence marker (JSON): present while the agent keeps the server down
    lease.armed       present once the control side renewed the server's lease (see the lease)
    .s.PGSQL.<port>   the unix socket the agent itself talks to the server through

Everything is read back from these files and from the processes, never kept in memory, so an
agent restarted after a crash sees exactly what its predecessor left.

What "fenced" means here: the postmaster and every child were SIGKILLed (which stops a hung or
SIGSTOPped server too, and leaves no backend that could still acknowledge a commit), the marker
is written first, and a fenced *primary* also gets a ``standby.signal``, so even a start by
hand (``pg_ctl start``) brings it up read-only. Only ``start_server`` (which removes what the
fence added) or a rewind/seed into a standby clears it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import signal
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import psutil

from activities.agent_pq import QueryError, QueryTimeout, quick_query
from contracts.agent import LocalView, PrimarySource, ServerInfo
from infra.errors import InfraError, InvalidRequestError
from infra.local.ports import port_free
from infra.local.postgres import (
    PgEndpoint,
    PgServer,
    give_to_server_user,
    pg_bin,
    prepare_dir,
    run_server_tool,
)
from infra.pg_tls import PgTlsFiles

log = logging.getLogger(__name__)

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
"""Allowed node names: they become folder names under the data root."""
SERVER_FILE = "server.json"
FENCE_FILE = "fenced"
ARMED_FILE = "lease.armed"
STOPPED_FILE = "stopped"
"""Present while a server is down because ``stop_server`` stopped it: the standby watchdog
leaves it down (``start_server`` removes it)."""
MAX_SOCKET_PATH = 107
"""Longest unix socket path the kernel takes (``sun_path`` is 108 bytes with its NUL)."""
PROBE_SQL = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')"


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """What one agent serves: its host, the address its servers listen on, its data root."""

    host: str
    """The host's name (its task queue is ``contracts.agent.host_task_queue(host)``)."""
    address: str = "127.0.0.1"
    """Address of the host that servers (and the HTTP endpoint) listen on."""
    data_root: Path
    """Folder holding one home per server."""
    trust_cidr: str = ""
    """Network the servers' peers are in (empty: the /24 around :attr:`address`). Without
    :attr:`pg_tls` its clients are trusted, replication included (a test world's setting);
    with it, replication from there needs TLS and SCRAM (``activities.agent_security``).
    Production should set the peer hosts' addresses only (a /32 each)."""
    pg_tls: PgTlsFiles | None = None
    """The host's certificate, its key and the CA (``SHADOWSHIFT_PG_TLS_*``): the servers
    serve TLS, accept replication from the network only over TLS with SCRAM, and stream
    with ``sslmode=verify-full``. ``None``: plaintext and ``trust``."""
    passfile: Path | None = None
    """The libpq passfile on this host with the replication role's password
    (``SHADOWSHIFT_PG_PASSFILE``); ``None``: replication logs in without a password."""

    @property
    def effective_cidr(self) -> str:
        """:attr:`trust_cidr`, or the /24 around the address."""
        if self.trust_cidr:
            return self.trust_cidr
        return str(ipaddress.ip_network(f"{self.address}/24", strict=False))


class ServerState(Enum):
    """What a server is, as its files and processes say (no query: cheap, works when hung)."""

    ABSENT = "absent"
    """No cluster in its home."""
    DOWN = "down"
    """A cluster, no postmaster."""
    PRIMARY = "primary"
    """Running without ``standby.signal``."""
    STANDBY = "standby"
    """Running with ``standby.signal``."""
    FENCED = "fenced"
    """The agent fenced it (the marker is present)."""


@dataclass(frozen=True)
class Observation:
    """A server's state and its postmaster's PID (``None`` when not running)."""

    state: ServerState
    pid: int | None = None


@dataclass(frozen=True)
class FenceRecord:
    """The fence marker's content."""

    at: float
    """When (Unix time)."""
    reason: str
    """Why, in a few words."""
    added_standby_signal: bool
    """The fence added ``standby.signal`` (a primary): ``start_server`` removes it again."""


class ManagedServer:
    """One server under the agent's data root; every method is idempotent."""

    def __init__(self, config: AgentConfig, node: str, port: int) -> None:
        self.config = config
        self.node = node
        self.port = port
        self.home = config.data_root / node
        self.pg = PgServer(home=self.home, port=port)

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.pg.data_dir

    @property
    def socket_endpoint(self) -> PgEndpoint:
        """The server's unix socket as a libpq endpoint (a directory as ``host``)."""
        return PgEndpoint(host=str(self.home), port=self.port)

    @property
    def conninfo(self) -> str:
        """libpq connection string over the unix socket."""
        return self.socket_endpoint.conninfo()

    def info(self, seed_seconds: float | None = None) -> ServerInfo:
        """The contract's description of this server as it is now."""
        return ServerInfo(node=self.node, address=self.config.address, port=self.port,
                          standby=self.has_standby_signal(), data_dir=str(self.data_dir),
                          seed_seconds=seed_seconds)

    # -- files ---------------------------------------------------------------------------

    def record(self, instance_id: str) -> None:
        """Create the home and write ``server.json`` (the HTTP routes and the lease find the
        server by name through it)."""
        prepare_dir(self.home, mode=0o755)
        document = {"instance_id": instance_id, "node": self.node, "port": self.port}
        path = self.home / SERVER_FILE
        if not path.exists() or json.loads(path.read_text()) != document:
            write_atomically(path, json.dumps(document) + "\n")

    def instance_id(self) -> str:
        """The instance id recorded for this server (the node name when none was)."""
        try:
            return str(json.loads((self.home / SERVER_FILE).read_text())["instance_id"])
        except (OSError, ValueError, KeyError):
            return self.node

    def is_cluster(self) -> bool:
        """Whether ``data`` holds a complete cluster."""
        return self.pg.initialised()

    def has_standby_signal(self) -> bool:
        """Whether ``data/standby.signal`` exists."""
        return (self.data_dir / "standby.signal").exists()

    def foreign_data(self) -> bool:
        """Whether ``data`` holds something that is not a cluster (never ours: our copies
        and initdb only ever rename complete clusters into place)."""
        return self.data_dir.exists() and any(self.data_dir.iterdir()) and not self.is_cluster()

    def fence_record(self) -> FenceRecord | None:
        """The fence marker, if the server is fenced."""
        try:
            raw = json.loads((self.home / FENCE_FILE).read_text())
            return FenceRecord(float(raw["at"]), str(raw["reason"]),
                               bool(raw["added_standby_signal"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # A marker we cannot read still means "fenced": safety first.
            return FenceRecord(0.0, "unreadable fence marker", False)

    def check_socket_path(self) -> None:
        """Refuse a home too deep for the server's unix socket."""
        path = self.home / f".s.PGSQL.{self.port}"
        if len(str(path)) > MAX_SOCKET_PATH:
            raise InvalidRequestError(
                f"{path} is longer than {MAX_SOCKET_PATH} characters, too long for a unix "
                "socket: give the agent a shorter --data-root")

    def observe(self) -> Observation:
        """State and PID from files and ``/proc`` only (a few microseconds)."""
        if (self.home / FENCE_FILE).exists():
            return Observation(ServerState.FENCED, self.pg.pid())
        pid = self.pg.pid()
        if pid is None:
            return Observation(ServerState.DOWN if self.is_cluster() else ServerState.ABSENT)
        state = ServerState.STANDBY if self.has_standby_signal() else ServerState.PRIMARY
        return Observation(state, pid)

    # -- processes -----------------------------------------------------------------------

    def running(self) -> bool:
        """Whether the postmaster runs (stopped by a signal or not)."""
        return self.pg.running()

    def check_port(self) -> None:
        """Refuse a port some other program listens on (ours, running, is fine)."""
        if self.running():
            return
        for address in {self.config.address, "127.0.0.1"}:
            if not port_free(self.port, address):
                raise InvalidRequestError(
                    f"port {self.port} on {address} is in use by another program: give "
                    f"{self.node} another port or stop that program")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (idempotent). Refuses a
        fenced server: clear the fence first."""
        fence = self.fence_record()
        if fence is not None:
            raise InvalidRequestError(
                f"{self.node} is fenced ({fence.reason}); start_server clears the fence")
        self.check_port()
        if self.pg.pid() is None:
            # A killed postmaster's lock files: PostgreSQL refuses to start while the PID in
            # them exists, and a zombie not yet reaped by init (seconds in some containers)
            # still does. pid() is None: that postmaster is dead.
            for lock_file in (self.data_dir / "postmaster.pid",
                              self.home / f".s.PGSQL.{self.port}.lock"):
                lock_file.unlink(missing_ok=True)
        self.pg.start()

    def stop(self) -> bool:
        """Stop the server: fast shutdown, else immediate, else SIGKILL of the whole tree (a
        hung server answers no shutdown request). ``False`` when it was not running."""
        pid = self.pg.pid()
        if pid is None:
            return False
        if _stopped_by_signal(pid):
            self.kill_tree()  # a stopped postmaster cannot hear a shutdown request
            return True
        for mode, timeout_s in (("fast", 20), ("immediate", 10)):
            try:
                self.pg.stop(mode=mode, timeout_s=timeout_s)
                return True
            except InfraError as err:
                log.warning("%s did not stop (%s shutdown): %s", self.node, mode, err)
        self.kill_tree()
        return True

    def kill_tree(self) -> bool:
        """SIGKILL the postmaster and every child; ``False`` when nothing ran.

        The postmaster is SIGSTOPped first so it forks nothing while its children are listed.
        Works on a stopped or frozen server (SIGKILL needs no cooperation)."""
        pid = self.pg.pid()
        if pid is None:
            return False
        try:
            postmaster = psutil.Process(pid)
            if postmaster.name() not in ("postgres", "postmaster"):
                log.warning("PID %d of %s is %s, not a postmaster: left alone.", pid,
                            self.node, postmaster.name())
                return False
            os.kill(pid, signal.SIGSTOP)
            tree = [postmaster, *postmaster.children(recursive=True)]
        except (psutil.NoSuchProcess, ProcessLookupError):
            return False
        for process in tree:
            with contextlib.suppress(psutil.Error):
                process.kill()
        wait_gone(tree, timeout_s=5.0)
        return True

    def fence(self, reason: str) -> bool:
        """Fence the server: marker first (so nothing of ours starts it meanwhile), then
        SIGKILL. Returns whether a server was running. Idempotent: a second fence keeps the
        first marker."""
        if self.fence_record() is None:
            add_signal = self.is_cluster() and not self.has_standby_signal()
            record = FenceRecord(time.time(), reason, add_signal)
            prepare_dir(self.home, mode=0o755)
            write_atomically(self.home / FENCE_FILE, json.dumps(asdict(record)) + "\n")
            if add_signal:
                signal_file = self.data_dir / "standby.signal"
                signal_file.touch()
                give_to_server_user(signal_file)
        return self.kill_tree()

    def clear_fence(self) -> bool:
        """Undo :meth:`fence` exactly (the server stays down); ``False`` when not fenced."""
        record = self.fence_record()
        if record is None:
            return False
        if record.added_standby_signal:
            (self.data_dir / "standby.signal").unlink(missing_ok=True)
        (self.home / FENCE_FILE).unlink(missing_ok=True)
        return True

    # -- looking from inside -------------------------------------------------------------

    def local_view(self, timeout_s: float) -> LocalView:
        """The server as seen on the host, within ``timeout_s`` whatever its state."""
        fence = self.fence_record()
        if fence is not None:
            return LocalView(self.node, False, False, None, True,
                             f"fenced by the agent: {fence.reason}")
        if not self.is_cluster():
            return LocalView(self.node, False, False, None, False, "no cluster")
        pid = self.pg.pid()
        if pid is None:
            return LocalView(self.node, False, False, None, False, "not running")
        if _stopped_by_signal(pid):
            return LocalView(self.node, False, False, None, False,
                             "its postmaster is stopped (SIGSTOP)")
        try:
            rows = quick_query(self.conninfo, PROBE_SQL, timeout_s)
        except QueryTimeout:
            return LocalView(self.node, False, False, None, False,
                             f"no answer within {timeout_s:.2f} s (hung or overloaded)")
        except QueryError as err:
            return LocalView(self.node, False, False, None, False, _first_line(str(err)))
        in_recovery, read_only = rows[0] if rows else ("t", "on")
        standby = in_recovery == "t"
        writable = not standby and read_only == "off"
        detail = "" if writable else ("a standby" if standby else "read-only")
        return LocalView(self.node, True, writable, standby, False, detail)

    def query(self, statement: str, timeout_s: float = 2.0) -> list[tuple[str | None, ...]]:
        """Rows of ``statement`` over the unix socket, within ``timeout_s``."""
        return quick_query(self.conninfo, statement, timeout_s)

    def streams_from(self, source: PrimarySource) -> bool:
        """Whether the server runs as a standby whose WAL receiver streams from ``source``."""
        if not self.running():
            return False
        try:
            rows = self.query("SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver")
        except QueryError:
            return False
        return bool(rows) and rows[0] == ("streaming", source.address, str(source.port))

    def rewind_blocker(self) -> str | None:
        """Why ``pg_rewind`` could not work on this cluster (read from ``pg_control``, so the
        server may be down), or ``None`` when it could."""
        output = run_server_tool(["env", "LC_ALL=C", pg_bin("pg_controldata"), "-D",
                                  str(self.data_dir)])
        hints = re.search(r"wal_log_hints setting:\s+(\w+)", output)
        checksums = re.search(r"Data page checksum version:\s+(\d+)", output)
        if (hints and hints.group(1) == "on") or (checksums and checksums.group(1) != "0"):
            return None
        return (f"{self.node} runs without wal_log_hints and data checksums, so pg_rewind "
                "cannot rewind it: seed it again (destroy_server, then seed_standby)")


def _stopped_by_signal(pid: int) -> bool:
    """Whether ``pid`` is stopped (state ``T``: SIGSTOP) and so cannot answer anything."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] in (["T"], ["t"])


def wait_gone(processes: list[psutil.Process], timeout_s: float) -> None:
    """Wait until every process exited (a zombie counts: its parent reaps it, not us)."""
    deadline = time.monotonic() + timeout_s
    pending = list(processes)
    while pending and time.monotonic() < deadline:
        still = []
        for process in pending:
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.status() != psutil.STATUS_ZOMBIE:
                    still.append(process)
        pending = still
        if pending:
            time.sleep(0.002)
    if pending:
        log.warning("Processes %s survived SIGKILL for %.0f s.",
                    [p.pid for p in pending], timeout_s)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "error"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a rename, so a crash leaves old or new, never half."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    os.replace(partial, path)
