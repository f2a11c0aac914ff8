"""The node agent's own options (``shadowshift agent``), parsed and validated.

Temporal's address and namespace and the log level come from the worker's environment
settings (``workers/settings.py``); what only an agent needs is given on its command line, so a
systemd unit names it per host. Standard library only: the CLI builds its parser from here
without importing the agent.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from contracts.agent import AGENT_HTTP_PORT

HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}\Z")
"""Allowed host names (they end up in a task queue name and an identity)."""


@dataclass(frozen=True, kw_only=True)
class AgentOptions:
    """What one agent process serves."""

    host: str
    """``--host``: the host's name; the agent polls ``shadowshift-host-<host>``."""
    address: str = "127.0.0.1"
    """``--address``: the host's address, where its servers and the HTTP endpoint listen."""
    data_root: Path | None = None
    """``--data-root``: one folder per server (default ``<state dir>/agents/<host>``)."""
    http_port: int = AGENT_HTTP_PORT
    """``--http-port``: port of the HTTP endpoint (lease renewal, health, metrics)."""
    trust_cidr: str = ""
    """``--trust-cidr``: network the servers trust (default: the /24 of the address; a
    test-world default, see ``docs/agent.md`` for production)."""


def host_name(raw: str) -> str:
    """``--host``'s type: a lower-case name of 1-31 characters."""
    if not HOST_NAME.match(raw):
        raise argparse.ArgumentTypeError(
            f"{raw!r}: use a lower-case letter, then up to 30 lower-case letters, digits or '-'")
    return raw


def host_address(raw: str) -> str:
    """``--address``'s type: an IPv4 or IPv6 address (not a name: servers bind to it)."""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an IP address") from None


def tcp_port(raw: str) -> int:
    """``--http-port``'s type: 1..65535."""
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 1..65535")
    return port


def network(raw: str) -> str:
    """``--trust-cidr``'s type: a network such as ``198.18.0.0/24``."""
    try:
        return str(ipaddress.ip_network(raw, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a network (e.g. 198.18.0.0/24)") \
            from None


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's options."""
    parser.add_argument("--host", required=True, type=host_name, metavar="NAME",
                        help="this host's name ([a-z][a-z0-9-]{0,30}); the agent polls "
                             "the task queue shadowshift-host-NAME")
    parser.add_argument("--address", type=host_address, default="127.0.0.1",
                        help="the host's address: servers and the HTTP endpoint listen on "
                             "it (default: 127.0.0.1)")
    parser.add_argument("--data-root", type=Path, metavar="DIR",
                        help="one folder per server (default: <SHADOWSHIFT_STATE_DIR>/agents/"
                             "NAME)")
    parser.add_argument("--http-port", type=tcp_port, default=AGENT_HTTP_PORT, metavar="PORT",
                        help=f"port of the HTTP endpoint (default: {AGENT_HTTP_PORT})")
    parser.add_argument("--trust-cidr", type=network, metavar="CIDR",
                        help="network the servers trust without a password, replication "
                             "included (default: the /24 of --address; test-world only)")


def options_from_args(args: argparse.Namespace) -> AgentOptions:
    """The options parsed by :func:`add_agent_arguments`."""
    return AgentOptions(host=args.host, address=args.address,
                        data_root=args.data_root.resolve() if args.data_root else None,
                        http_port=args.http_port, trust_cidr=args.trust_cidr or "")
