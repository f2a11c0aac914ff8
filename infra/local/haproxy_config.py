"""HAProxy's configuration for the local platform, rendered from the recorded topology.

Kept apart from the process and runtime-API handling in :mod:`infra.local.haproxy`; the
settings here decide how fast clients notice a cutover or a dead server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SERVER_OPTIONS = (
    "inter 500 fall 2 rise 1 on-marked-down shutdown-sessions"
    " observe layer4 error-limit 1 on-error mark-down"
)
"""Health checking of every server: checks every 500 ms, and a refused connection of live
traffic marks the server down at once (a killed primary is out of the rotation after one
client's attempt instead of two failed checks), closing what it still holds."""


@dataclass
class ServerEntry:
    """One backend server."""

    name: str
    """Server name inside the service's backend."""
    address: str
    """IP address."""
    port: int
    """TCP port."""
    source: str = ""
    """Address HAProxy connects from (checks and traffic); empty: the kernel's choice."""

    def options(self) -> str:
        """What the server line adds after ``address:port`` besides the shared options."""
        return f" source {self.source}" if self.source else ""


@dataclass
class ServiceEntry:
    """One protected service: a frontend port and its backend servers."""

    name: str
    """Service name; the frontend is ``fe_<name>``, the backend ``be_<name>``."""
    bind_port: int
    """Port clients connect to on 127.0.0.1."""
    servers: list[ServerEntry] = field(default_factory=list)
    """Servers declared in the config (run-time additions are recorded here too)."""


def render_config(services: Iterable[ServiceEntry], socket_path: Path, state_file: Path) -> str:
    """The whole ``haproxy.cfg``: one TCP frontend and backend per service."""
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        f"    server-state-file {state_file}",
        "    maxconn 4096",
        "defaults",
        "    mode tcp",
        # A refused connect marks the server down (observe, in SERVER_OPTIONS) and is retried
        # after min(timeout connect, 1 s) on another server (redispatch 1): a client that
        # reaches a dead primary gets the new one or fails at once, instead of hanging 3 s in
        # 1 s retries. Local servers answer a SYN in microseconds; 100 ms means it is gone.
        "    timeout connect 100ms",
        "    retries 3",
        "    option redispatch 1",
        "    timeout client 1h",
        "    timeout server 1h",
        "    load-server-state-from-file global",
    ]
    for service in services:
        lines += [
            f"frontend fe_{service.name}",
            f"    bind 127.0.0.1:{service.bind_port}",
            f"    default_backend be_{service.name}",
            f"backend be_{service.name}",
            "    balance roundrobin",
            "    option pgsql-check user postgres",
            f"    default-server {SERVER_OPTIONS}",
        ]
        lines += [
            f"    server {s.name} {s.address}:{s.port} weight 0 check{s.options()}"
            for s in service.servers
        ]
    return "\n".join(lines) + "\n"
