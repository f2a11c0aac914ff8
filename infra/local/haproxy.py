"""A managed HAProxy process: the local platform's load balancer.

Clients connect to one TCP frontend per protected service; server weights decide which
PostgreSQL instance receives new connections. Servers are added and weighted through the
runtime API (a unix socket, mode 0600), so no reload drops a client connection.

The desired topology (services and their servers) is kept in ``topology.json`` beside the
generated config; a reload (only needed for a new service) regenerates the config from it, and
HAProxy's ``server-state-file`` carries weights and admin states across the reload, so servers
added at run time survive it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.errors import InfraError, InvalidRequestError
from infra.local.haproxy_config import SERVER_OPTIONS, ServerEntry, ServiceEntry, render_config
from infra.local.ports import port_free

__all__ = ["MAX_WEIGHT", "HAProxyManager", "ServerEntry", "ServerStats", "ServiceEntry"]

log = logging.getLogger(__name__)

MAX_WEIGHT = 256
"""HAProxy's largest server weight."""


@dataclass(frozen=True)
class ServerStats:
    """What HAProxy reports about one server."""

    weight: int
    """Current effective weight."""
    status: str
    """``UP``, ``DOWN``, ``MAINT``, ``DRAIN``, ``no check``..."""
    current_sessions: int
    """Open sessions now."""
    total_sessions: int
    """Sessions since start."""
    connection_errors: int
    """Failed connection attempts."""
    queue: int
    """Requests waiting for a connection slot."""
    connect_time_ms: int
    """Average connect time over the last 1024 connections."""
    session_time_ms: int
    """Average total session time over the last 1024 sessions (TCP mode's response time)."""
    bytes_in: int = 0
    """Bytes received from clients for this server since start."""
    bytes_out: int = 0
    """Bytes sent to clients by this server since start."""


class HAProxyManager:
    """Runs one HAProxy for a state directory and drives it through the runtime API.

    Every operation is idempotent, and weights are always set absolutely.
    """

    def __init__(self, directory: Path, *, binary: str = "haproxy") -> None:
        self.directory = directory
        self.binary = binary
        self.config_file = directory / "haproxy.cfg"
        self.socket_path = directory / "haproxy.sock"
        self.pid_file = directory / "haproxy.pid"
        self.state_file = directory / "server-state"
        self.topology_file = directory / "topology.json"

    # -- process ---------------------------------------------------------------------------

    def running(self) -> bool:
        """Whether the HAProxy process recorded in the pid file is alive."""
        pid = self._pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return self.socket_path.exists()

    def start(self) -> None:
        """Start HAProxy from the recorded topology (idempotent)."""
        if self.running():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._exec([self.binary, "-f", str(self.config_file), "-D", "-p", str(self.pid_file)])
        self._wait_for_socket()

    def stop(self) -> None:
        """Stop HAProxy (idempotent)."""
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.socket_path.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)

    def reload(self) -> None:
        """Seamless reload: hand the listening sockets to a new process, keep server state."""
        if not self.running():
            self.start()
            return
        self.state_file.write_text(self.command("show servers state"))
        self._write_config()
        old_pid = str(self._pid())
        self._exec(
            [
                self.binary,
                "-f",
                str(self.config_file),
                "-D",
                "-p",
                str(self.pid_file),
                "-x",
                str(self.socket_path),
                "-sf",
                old_pid,
            ]
        )
        self._wait_for_socket()

    # -- topology --------------------------------------------------------------------------

    def ensure_service(self, name: str, bind_port: int, servers: list[ServerEntry]) -> None:
        """Declare a service with its initial servers (weight 100 for the first, 0 after)."""
        topology = self._topology()
        if name in topology:
            if topology[name].bind_port != bind_port:
                raise InvalidRequestError(
                    f"service {name} already listens on {topology[name].bind_port}, not {bind_port}"
                )
            return
        if any(service.bind_port == bind_port for service in topology.values()):
            raise InvalidRequestError(f"port {bind_port} is already a HAProxy frontend")
        if not port_free(bind_port):
            raise InvalidRequestError(f"port {bind_port} is already in use")
        topology[name] = ServiceEntry(name, bind_port, list(servers))
        self._save_topology(topology)
        self.reload()
        for index, server in enumerate(servers):
            self.set_weight(name, server.name, 100 if index == 0 else 0)

    def add_server(self, service: str, server: ServerEntry, *, weight: int = 0) -> None:
        """Add ``server`` to a running backend at ``weight`` without a reload.

        Idempotent: a server that is already there keeps its current weight.
        """
        topology = self._topology()
        if service not in topology:
            raise InvalidRequestError(f"unknown HAProxy service {service!r}")
        known = {s.name: s for s in topology[service].servers}
        if server.name not in known:
            topology[service].servers.append(server)
            self._save_topology(topology)
        if server.name in self.server_names(service):
            return  # already there: its weight may have moved on (a cutover), keep it
        # Dynamic servers do not inherit ``default-server``: repeat its settings here.
        self.command(
            f"add server be_{service}/{server.name} {server.address}:{server.port} "
            f"weight {weight} check {SERVER_OPTIONS}{server.options()}"
        )
        self.command(f"enable health be_{service}/{server.name}")
        self.command(f"enable server be_{service}/{server.name}")

    def remove_server(self, service: str, server_name: str) -> None:
        """Drain and delete a server (idempotent)."""
        if server_name in self.server_names(service):
            backend_server = f"be_{service}/{server_name}"
            self.command(f"disable server {backend_server}")
            self.command(f"shutdown sessions server {backend_server}")
            self._retry(f"del server {backend_server}")
        topology = self._topology()
        if service in topology:
            topology[service].servers = [
                s for s in topology[service].servers if s.name != server_name
            ]
            self._save_topology(topology)

    def remove_standby_server(self, service: str, server_name: str) -> None:
        """Remove a server that must not carry traffic (a standby about to be re-added at
        another address).

        Raises:
            InvalidRequestError: it has a weight: it may carry traffic.
        """
        if not self.running():  # only the topology the next start reads knows it
            topology = self._topology()
            if service in topology:
                topology[service].servers = [
                    s for s in topology[service].servers if s.name != server_name]
                self._save_topology(topology)
            return
        if self.weights(service).get(server_name, 0) > 0:
            raise InvalidRequestError(
                f"server {server_name} of {service} carries traffic; it cannot be moved")
        self.remove_server(service, server_name)

    def services(self) -> list[str]:
        """Names of the declared services."""
        return list(self._topology())

    # -- runtime state ---------------------------------------------------------------------

    def set_weight(self, service: str, server_name: str, weight: int) -> None:
        """Set a server's weight absolutely (0..256)."""
        self.command(self.weight_command(service, server_name, weight))

    def set_enabled(self, service: str, server_name: str, enabled: bool) -> None:
        """Put a server in or out of maintenance (no new connections while out)."""
        self.command(self.state_command(service, server_name, enabled))

    @staticmethod
    def weight_command(service: str, server_name: str, weight: int) -> str:
        """The runtime-API line setting a server's weight absolutely (0..256)."""
        if not 0 <= weight <= MAX_WEIGHT:
            raise InvalidRequestError(f"weight {weight} is outside 0..{MAX_WEIGHT}")
        return f"set server be_{service}/{server_name} weight {weight}"

    @staticmethod
    def state_command(service: str, server_name: str, enabled: bool) -> str:
        """The runtime-API line putting a server in or out of maintenance."""
        return f"set server be_{service}/{server_name} state {'ready' if enabled else 'maint'}"

    def commands(self, lines: list[str]) -> str:
        """Send several commands in one runtime-API round trip (``;``-separated, run in
        order); any refusal raises ``InfraError`` like :meth:`command`."""
        if any(";" in line for line in lines):
            raise InvalidRequestError(f"a runtime-API command cannot contain ';': {lines}")
        return self.command("; ".join(lines)) if lines else ""

    @staticmethod
    def shutdown_command(service: str, server_name: str) -> str:
        """The runtime-API line closing every client session attached to a server."""
        return f"shutdown sessions server be_{service}/{server_name}"

    def shutdown_sessions(self, service: str, server_name: str) -> None:
        """Close every client session currently attached to a server."""
        self.command(self.shutdown_command(service, server_name))

    def server_names(self, service: str) -> list[str]:
        """Servers the running backend has (config and run-time ones)."""
        return list(self.stats(service))

    def stats(self, service: str) -> dict[str, ServerStats]:
        """Per-server statistics of a service's backend."""
        text = self.command("show stat").lstrip("# ")
        result: dict[str, ServerStats] = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") != f"be_{service}" or row.get("svname") in ("BACKEND", None):
                continue
            result[row["svname"]] = ServerStats(
                weight=_int(row.get("weight")),
                status=row.get("status", ""),
                current_sessions=_int(row.get("scur")),
                total_sessions=_int(row.get("stot")),
                connection_errors=_int(row.get("econ")),
                queue=_int(row.get("qcur")),
                connect_time_ms=_int(row.get("ctime")),
                session_time_ms=_int(row.get("ttime")),
                bytes_in=_int(row.get("bin")),
                bytes_out=_int(row.get("bout")),
            )
        return result

    def weights(self, service: str) -> dict[str, int]:
        """Current weight per server (0 for servers in maintenance)."""
        return {
            name: (0 if stats.status.startswith("MAINT") else stats.weight)
            for name, stats in self.stats(service).items()
        }

    def command(self, line: str) -> str:
        """Send one runtime-API command and return its answer; errors raise ``InfraError``.

        Raises:
            InvalidRequestError: the line holds a line break or NUL, which would end the
                command early and start another (the socket reads one command per line).
        """
        if any(c in line for c in "\n\r\0"):
            raise InvalidRequestError(f"a runtime-API command is one line: {line!r}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(5)
                conn.connect(str(self.socket_path))
                conn.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as err:
            raise InfraError(
                f"HAProxy runtime API unreachable at {self.socket_path}: {err}"
            ) from err
        answer = b"".join(chunks).decode()
        lowered = answer.lower()
        markers = ("unknown", "no such", "error", "require", "not found", "cannot", "invalid")
        if not line.startswith("show ") and any(marker in lowered for marker in markers):
            raise InfraError(f"HAProxy refused {line!r}: {answer.strip()}")
        return answer

    # -- internals -------------------------------------------------------------------------

    def _retry(self, line: str, attempts: int = 50) -> str:
        for _ in range(attempts - 1):
            try:
                return self.command(line)
            except InfraError:
                time.sleep(0.1)  # sessions are still closing
        return self.command(line)

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _topology(self) -> dict[str, ServiceEntry]:
        if not self.topology_file.exists():
            return {}
        raw = json.loads(self.topology_file.read_text())
        return {
            name: ServiceEntry(
                name, entry["bind_port"], [ServerEntry(**server) for server in entry["servers"]]
            )
            for name, entry in raw.items()
        }

    def _save_topology(self, topology: dict[str, ServiceEntry]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.topology_file.with_suffix(".tmp")
        temp.write_text(json.dumps({n: asdict(s) for n, s in topology.items()}, indent=2))
        temp.replace(self.topology_file)

    def _write_config(self) -> None:
        text = render_config(self._topology().values(), self.socket_path, self.state_file)
        temp = self.config_file.with_suffix(".tmp")
        temp.write_text(text)
        self._exec([self.binary, "-c", "-q", "-f", str(temp)])
        temp.replace(self.config_file)

    def _exec(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise InfraError(f"haproxy failed: {(done.stderr or done.stdout).strip()}")

    def _wait_for_socket(self, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.command("show info")
                os.chmod(self.socket_path, 0o600)
                return
            except InfraError:
                time.sleep(0.05)
        raise InfraError("HAProxy did not open its runtime socket")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
