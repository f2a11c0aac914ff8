"""Helpers for namespace-host tests: bounded polls, a TCP echo server and client, leftovers."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from infra.hosts import _system, disk, links, records
from infra.hosts.build import host_plans
from infra.hosts.host import Host
from infra.hosts.spec import FleetSpec

ECHO_SERVER = """
import socket, sys, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(64)
def serve(conn, peer):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(peer[0].encode() + b" " + data)
while True:
    conn, peer = server.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""
"""Answers every message with ``<peer address> <message>``: the reply shows the source."""

ECHO_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
        s.sendall(b"ping")
        print(s.recv(4096).decode())
except OSError as err:
    print(f"error {err.errno}")
"""
"""Run inside a host: prints the echo or ``error <errno>`` (timeout: ``error None``)."""

ECHO_PORT = 7007
"""Where test echo servers listen (on the host's own address)."""


def eventually(condition: Callable[[], object], *, timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.1f} s")
        time.sleep(0.02)


def start_echo(host: Host, port: int = ECHO_PORT) -> subprocess.Popen[bytes]:
    """An echo server inside ``host`` on its own address, once it accepts connections."""
    server = host.popen([sys.executable, "-c", ECHO_SERVER, str(host.address), str(port)])
    eventually(lambda: echo(host.address, port) is not None or server.poll() is not None,
               timeout_s=10, what=f"echo server on {host.name}")
    assert server.poll() is None, "the echo server died"
    return server


def echo(address: IPv4Address, port: int = ECHO_PORT, *, source: IPv4Address | None = None,
         timeout_s: float = 0.5) -> str | None:
    """From the root namespace (from ``source``): the peer address the server saw, or
    ``None`` when nothing answered."""
    try:
        with socket.create_connection((str(address), port), timeout=timeout_s,
                                      source_address=(str(source), 0) if source else None) as s:
            s.sendall(b"ping")
            reply = s.recv(4096).decode()
    except OSError:
        return None
    return reply.split()[0] if reply.endswith("ping") else None


def echo_from(host: Host, address: IPv4Address, port: int = ECHO_PORT,
              timeout_s: float = 0.5) -> str:
    """From inside ``host``: the peer address the server saw, or ``error <errno>``."""
    result = host.run([sys.executable, "-c", ECHO_CLIENT, str(address), str(port),
                       str(timeout_s)], timeout_s=30)
    return result.stdout.strip().removesuffix(" ping")


def connect_errno(host: Host, address: str, port: int, timeout_s: float = 1.0) -> str:
    """What a TCP connect from inside ``host`` gives: ``ok``, ``timeout`` or the errno
    name (``ENETUNREACH``, ``ECONNREFUSED``...)."""
    code = ("import socket, sys\n"
            "s = socket.socket(); s.settimeout(float(sys.argv[3]))\n"
            "try:\n    s.connect((sys.argv[1], int(sys.argv[2]))); print('ok')\n"
            "except socket.timeout:\n    print('timeout')\n"
            "except OSError as e:\n    print(e.errno)\n")
    out = host.run([sys.executable, "-c", code, address, str(port), str(timeout_s)],
                   timeout_s=30).stdout.strip()
    return errno.errorcode.get(int(out), out) if out.isdigit() else out


def ip_forward() -> str:
    """The root namespace's ``net.ipv4.ip_forward``."""
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def leftovers_of(spec: FleetSpec) -> list[str]:
    """Anything of ``spec``'s fleet that exists on the machine (empty: all gone)."""
    left = []
    for plan in host_plans(spec):
        if (_system.NETNS_DIR / plan.netns).exists():
            left.append(f"netns {plan.netns}")
        if _system.ok(["ip", "link", "show", "dev", plan.netns]):
            left.append(f"veth {plan.netns}")
        if disk.mounts_at(plan.data_dir):
            left.append(f"mount {plan.data_dir}")
        if disk.loop_devices(plan.image):
            left.append(f"loop of {plan.image}")
        left += [f"cgroup {p}" for p in plan.cgroups.paths.values() if p.exists()]
        if records.read_host(plan.netns):
            left.append(f"record {plan.netns}")
    if _system.ok(["ip", "link", "show", "dev", spec.bridge]):
        left.append(f"bridge {spec.bridge}")
    owner = records.read_bridge(spec.bridge)
    if owner and owner.fleet == spec.name:
        left.append(f"bridge record {spec.bridge}")
    return left


def netns_count(name: str) -> int:
    """How many network namespaces are named ``name`` (0 or 1, unless something duplicated)."""
    listing = _system.run(["ip", "-j", "netns", "list"]).stdout or "[]"
    return sum(1 for entry in json.loads(listing) if entry["name"] == name)


def root_routes() -> list[str]:
    """The root namespace's IPv4 routes of the main table, as ``dst dev`` strings."""
    return sorted(f"{r['dst']} {r.get('dev', '')}"
                  for r in _system.ip_json("-4", "route", "show", "table", "main"))


def links_named(prefix: str) -> list[str]:
    """Root-namespace links whose name starts with ``prefix``."""
    return sorted(link["ifname"] for link in _system.ip_json("link", "show")
                  if link["ifname"].startswith(prefix))


def host_shape(spec: FleetSpec, name: str) -> list[str]:
    """What is wrong with host ``name``'s network (empty: exactly as built)."""
    plan = next(p for p in host_plans(spec) if p.name == name)
    return links.host_problems(plan.link)


def fleet_routes(spec: FleetSpec) -> list[str]:
    """The root namespace's routes through the fleet's bridge."""
    return [route for route in root_routes() if route.endswith(f" {spec.bridge}")]
