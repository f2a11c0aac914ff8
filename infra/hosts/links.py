"""Bridges, network namespaces and veth pairs, each converged to one exact shape.

A leftover that has exactly the wanted shape is adopted; anything else of the same name is
re-plumbed or made again (these objects are cheap; what a host keeps lives on its disk).

IPv6 is switched off on everything we create (the bridge, the root side of each veth, the
host's ``eth0``): a link-local ``fe80::`` address would let a process listening on ``::`` be
reached beyond the host's one IPv4 address, and would add ``fe80::/64`` routes to the root
namespace. A host's loopback keeps ``::1``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from infra.hosts import _system
from infra.hosts._system import NETNS_DIR, CommandError

log = logging.getLogger(__name__)


# -- bridge --------------------------------------------------------------------------------


def bridge_shape(bridge: str) -> dict[str, Any] | None:
    """The bridge as the kernel has it: kind, MAC, up, addresses in order (``None``: no
    such link)."""
    links = _system.ip_json("-d", "addr", "show", "dev", bridge)
    if not links:
        return None
    link = links[0]
    return {
        "kind": link.get("linkinfo", {}).get("info_kind"),
        "mac": link.get("address"),
        "up": "UP" in link.get("flags", []),
        "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                      if a.get("family") == "inet"],
    }


def ensure_bridge(bridge: str, mac: str, addresses: list[IPv4Address],
                  subnet: IPv4Network) -> None:
    """Make ``bridge`` exist, up, with ``mac`` and exactly ``addresses`` (first = primary)."""
    wanted = [f"{address}/{subnet.prefixlen}" for address in addresses]
    shape = bridge_shape(bridge)
    if shape is not None and shape["kind"] != "bridge":
        log.warning("%s exists but is a %s. Deleting it.", bridge, shape["kind"])
        _system.run(["ip", "link", "del", bridge])
        shape = None
    if shape is None:
        _system.run(["ip", "link", "add", bridge, "address", mac, "type", "bridge",
                     "forward_delay", "0", "stp_state", "0"])
        _disable_ipv6(bridge)
        shape = bridge_shape(bridge) or {}
    if shape.get("mac") != mac:
        _system.run(["ip", "link", "set", "dev", bridge, "address", mac])
    if shape.get("addresses") != wanted:
        _system.run(["ip", "addr", "flush", "dev", bridge])
        for address in wanted:  # the first one added is the primary
            _system.run(["ip", "addr", "add", address, "dev", bridge])
    _system.run(["ip", "link", "set", "dev", bridge, "up"])


def delete_link(name: str, *, netns: str | None = None) -> None:
    """Delete a link (gone already is fine)."""
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    result = _system.run([*prefix, "link", "del", name], check=False)
    if result.returncode != 0 and "Cannot find device" not in result.stderr \
            and "does not exist" not in result.stderr:
        raise CommandError([*prefix, "link", "del", name], result.returncode, result.stderr)


# -- host network --------------------------------------------------------------------------


@dataclass(frozen=True)
class HostLink:
    """The wanted network of one host."""

    netns: str
    """Namespace name, also the root side of the veth pair."""
    bridge: str
    """The fleet's bridge the root side is enslaved to."""
    address: IPv4Address
    """The host's address on ``eth0``."""
    subnet: IPv4Network
    """The fleet's subnet (the address's prefix)."""
    root_mac: str
    """MAC of the root side."""
    host_mac: str
    """MAC of ``eth0`` inside the namespace."""


def netns_exists(netns: str) -> bool:
    """Whether ``/run/netns/<netns>`` names a live namespace (not just an empty file)."""
    return (NETNS_DIR / netns).exists() and _system.ok(_system.in_netns(netns, ["true"]))


def host_problems(link: HostLink) -> list[str]:
    """What differs from ``link``'s shape (empty: adoptable as it is)."""
    if not netns_exists(link.netns):
        return ["netns"]
    problems = []
    inside = {entry["ifname"]: entry for entry in _system.ip_json("addr", "show",
                                                                  netns=link.netns)}
    eth0 = inside.get("eth0", {})
    addresses = [f"{a['local']}/{a['prefixlen']}" for a in eth0.get("addr_info", [])
                 if a.get("family") in ("inet", "inet6")]
    if (eth0.get("address") != link.host_mac
            or addresses != [f"{link.address}/{link.subnet.prefixlen}"]
            or "UP" not in eth0.get("flags", [])):
        problems.append("eth0")
    if set(inside) != {"lo", "eth0"} or "UP" not in inside.get("lo", {}).get("flags", []):
        problems.append("links")
    routes = _system.ip_json("-4", "route", "show", "table", "main", netns=link.netns)
    if [route.get("dst") for route in routes] != [str(link.subnet)]:
        problems.append("routes")  # one connected route, no default, nothing else
    root = _system.ip_json("-d", "link", "show", "dev", link.netns)
    if not root or root[0].get("address") != link.root_mac \
            or root[0].get("master") != link.bridge or "UP" not in root[0].get("flags", []):
        problems.append("veth")
    return problems


def ensure_host(link: HostLink) -> None:
    """Converge one host's namespace and veth pair to ``link``.

    An exact leftover is adopted. A live namespace of another shape is kept (processes in it
    stay in it) but emptied: every link but ``lo`` and every route go, and a new veth pair
    is plugged in; the root side of the pair is always made anew. Only a missing namespace
    is created."""
    problems = host_problems(link)
    if not problems:
        return
    delete_link(link.netns)  # the root side (its peer goes with it)
    prefix = ["ip", "-n", link.netns]
    if "netns" in problems:
        delete_host(link.netns)  # an empty file left by a killed `ip netns add`
        _system.run(["ip", "netns", "add", link.netns])
    else:
        log.warning("Host namespace %s differs from its spec (%s). Re-plumbing it.",
                    link.netns, ", ".join(problems))
        for entry in _system.ip_json("link", "show", netns=link.netns):
            if entry["ifname"] != "lo":
                delete_link(entry["ifname"], netns=link.netns)
        if _system.ip_json("-4", "route", "show", "table", "main", netns=link.netns):
            _system.run([*prefix, "-4", "route", "flush", "table", "main"])
    # The namespace's "default" applies to eth0, created next; lo keeps ::1.
    _system.run(_system.in_netns(link.netns, ["sh", "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"]))
    _system.run(["ip", "link", "add", link.netns, "address", link.root_mac, "type", "veth",
                 "peer", "name", "eth0", "address", link.host_mac, "netns", link.netns])
    _disable_ipv6(link.netns)
    _system.run(["ip", "link", "set", "dev", link.netns, "master", link.bridge, "up"])
    _system.run([*prefix, "addr", "add", f"{link.address}/{link.subnet.prefixlen}",
                 "dev", "eth0"])
    _system.run([*prefix, "link", "set", "dev", "lo", "up"])
    _system.run([*prefix, "link", "set", "dev", "eth0", "up"])


def delete_host(netns: str) -> None:
    """Delete a host's veth pair and namespace (either gone already is fine).

    The root side is deleted explicitly: a namespace whose name is removed lives on while a
    process is still in it, and its ``eth0`` (with the pair) with it."""
    delete_link(netns)
    path = NETNS_DIR / netns
    if path.exists():  # also an empty file left by a killed `ip netns add`: removed alike
        _system.run(["ip", "netns", "delete", netns])


def netns_pids(netns: str) -> set[int]:
    """Processes whose network namespace is ``netns`` (found through ``/proc``)."""
    try:
        target = os.stat(NETNS_DIR / netns)
    except OSError:
        return set()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (target.st_dev, target.st_ino):
            found.add(int(entry.name))
    return found


def _disable_ipv6(interface: str) -> None:
    """Switch IPv6 off on a root-namespace interface of ours (before it goes up)."""
    with contextlib.suppress(FileNotFoundError):  # a kernel without IPv6
        Path(f"/proc/sys/net/ipv6/conf/{interface}/disable_ipv6").write_text("1")
