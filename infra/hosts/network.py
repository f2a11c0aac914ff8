"""The address plan of namespace hosts, and the check that it collides with nothing.

Every address comes from one documented test range, 198.18.0.0/15 (RFC 2544 reserves it for
benchmarking network devices; it is never routed on the internet and rarely used on LANs).
Fleet ``N`` (0..255) owns ``198.18.N.0/24`` and the bridge ``ssbr<N>`` in the root
namespace, so several fleets (two test sessions, CI beside a developer) run side by side:

====================  ====================================================================
``198.18.N.1``        CONTROL: the bridge's primary address; the control worker's probes
``198.18.N.2``        ROUTER: HAProxy's source address for health checks and traffic
``198.18.N.3``        TEMPORAL: where agents reach the Temporal frontend (``--ip`` on it)
``198.18.N.10``...    the fleet's hosts, in the order of the spec (at most 200)
====================  ====================================================================

A host's network namespace and the root side of its veth pair are both named
``ss<N>-<host>`` (at most 15 characters, Linux's limit for interface names: host names have
at most 9). Nothing else is added to the root namespace's routes than the bridge's connected
``/24``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from infra.errors import InvalidRequestError
from infra.hosts import _system
from infra.hosts.records import claimed_fleet_indexes

FLEET_RANGE = IPv4Network("198.18.0.0/15")
"""The one test range every fleet address comes from (RFC 2544)."""
MAX_FLEET_INDEX = 255
"""Fleet indexes run from 0 to this (``198.18.0.0/24`` .. ``198.18.255.0/24``)."""
CONTROL_OCTET = 1
"""The control worker's address (the bridge's primary address)."""
ROUTER_OCTET = 2
"""The router's (HAProxy's) source address."""
TEMPORAL_OCTET = 3
"""Where agents reach the Temporal frontend."""
FIRST_HOST_OCTET = 10
"""The first host's address; the others follow in the spec's order."""
MAX_HOSTS = 200
"""Hosts per fleet (``.10`` .. ``.209``)."""
INTERFACE_NAME_MAX = 15
"""Linux's limit on interface names (``IFNAMSIZ`` - 1)."""


def fleet_subnet(index: int) -> IPv4Network:
    """Fleet ``index``'s ``/24`` (``198.18.<index>.0/24``)."""
    _check_index(index)
    return IPv4Network(f"198.18.{index}.0/24")


def bridge_name(index: int) -> str:
    """The fleet's bridge in the root namespace (``ssbr<index>``)."""
    _check_index(index)
    return f"ssbr{index}"


def control_address(index: int) -> IPv4Address:
    """CONTROL (``.1``): the bridge's primary address, source of the control worker's probes."""
    return _address(index, CONTROL_OCTET)


def router_address(index: int) -> IPv4Address:
    """ROUTER (``.2``): HAProxy's source address towards the hosts."""
    return _address(index, ROUTER_OCTET)


def temporal_address(index: int) -> IPv4Address:
    """TEMPORAL (``.3``): the address the Temporal frontend listens on for the agents."""
    return _address(index, TEMPORAL_OCTET)


def reserved_addresses(index: int) -> tuple[IPv4Address, IPv4Address, IPv4Address]:
    """CONTROL, ROUTER and TEMPORAL, in the order they go on the bridge (CONTROL first, so it
    is the primary address and the source of the root namespace's own connections)."""
    return control_address(index), router_address(index), temporal_address(index)


def host_address(index: int, position: int) -> IPv4Address:
    """The address of the fleet's ``position``-th host (0-based): ``.10`` upward.

    Addresses follow the spec's order: append hosts; a host removed from the middle
    renumbers the ones after it (Pulumi then replaces them).
    """
    if not 0 <= position < MAX_HOSTS:
        raise InvalidRequestError(f"host position {position} is outside 0..{MAX_HOSTS - 1}")
    return _address(index, FIRST_HOST_OCTET + position)


def host_netns(index: int, host: str) -> str:
    """The host's network namespace, also the name of the root side of its veth pair."""
    _check_index(index)
    return f"ss{index}-{host}"


def host_mac(index: int, position: int, *, root_side: bool) -> str:
    """A fixed, locally administered MAC for one end of a host's veth pair.

    Fixed so that a host re-created with the same address keeps its MAC (its peers' ARP
    caches stay right) and so a leftover can be recognised as the same host."""
    octet = FIRST_HOST_OCTET + position
    return f"02:73:73:{index:02x}:{octet:02x}:{2 if root_side else 1:02x}"


def bridge_mac(index: int) -> str:
    """The bridge's fixed MAC: a bridge with an automatic MAC takes its lowest port's, which
    changes as hosts come and go and leaves the hosts' ARP caches wrong for a while."""
    return f"02:73:73:62:72:{index:02x}"


def _address(index: int, octet: int) -> IPv4Address:
    return fleet_subnet(index).network_address + octet


def _check_index(index: int) -> None:
    if not isinstance(index, int) or not 0 <= index <= MAX_FLEET_INDEX:
        raise InvalidRequestError(
            f"fleet index {index!r} is outside 0..{MAX_FLEET_INDEX}: fleet N uses 198.18.N.0/24; "
            "pick one with infra.hosts.network.free_fleet_index()")


# -- what the machine already uses ---------------------------------------------------------


@dataclass(frozen=True)
class MachineNetwork:
    """One address or route of the machine, as a network."""

    network: IPv4Network
    """The prefix it covers (a host route is a ``/32``)."""
    link: str
    """The interface it is on (empty for routes without one, e.g. ``blackhole``)."""
    description: str
    """How an operator would recognise it, e.g. ``address 192.0.2.2/24 on eth0``."""


def machine_networks(*, netns: str | None = None) -> list[MachineNetwork]:
    """Every IPv4 address and route (all tables, default routes excluded) of the root network
    namespace, or of ``netns`` (tests use a scratch namespace to play another machine)."""
    found: list[MachineNetwork] = []
    for link in _system.ip_json("-4", "addr", "show", netns=netns):
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            interface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            found.append(MachineNetwork(
                IPv4Network(interface.network), link["ifname"],
                f"address {interface} on {link['ifname']}"))
    for route in _system.ip_json("-4", "route", "show", "table", "all", netns=netns):
        destination = str(route.get("dst", ""))
        if destination in ("", "default", "0.0.0.0/0"):
            continue  # a default route is no range of the machine's: our hosts never use it
        network = IPv4Network(destination if "/" in destination else f"{destination}/32",
                              strict=False)
        found.append(MachineNetwork(network, str(route.get("dev", "")), _describe(route)))
    return found


def _describe(route: dict[str, Any]) -> str:
    parts = [f"route {route.get('type', 'unicast')} {route['dst']}"]
    if route.get("gateway"):
        parts.append(f"via {route['gateway']}")
    if route.get("dev"):
        parts.append(f"dev {route['dev']}")
    parts.append(f"(table {route.get('table', 'main')})")
    return " ".join(parts)


def check_range(subnet: IPv4Network, *, own_links: Collection[str] = (),
                netns: str | None = None) -> None:
    """Refuse a fleet subnet that overlaps any address or route of the machine.

    Args:
        subnet: the fleet's ``/24`` (:func:`fleet_subnet`); must lie in :data:`FLEET_RANGE`.
        own_links: interfaces whose addresses and routes are the fleet's own (its bridge).
        netns: look at this network namespace instead of the root one.

    Raises:
        InvalidRequestError: naming the fleet's range and the machine's address or route.
    """
    if not subnet.subnet_of(FLEET_RANGE):
        raise InvalidRequestError(f"fleet range {subnet} is outside the test range "
                                  f"{FLEET_RANGE}; hosts use 198.18.N.0/24 only")
    for entry in machine_networks(netns=netns):
        if entry.link in own_links or not entry.network.overlaps(subnet):
            continue
        raise InvalidRequestError(
            f"fleet range {subnet} overlaps this machine's {entry.description}: pick another "
            "fleet index (infra.hosts.network.free_fleet_index()), or remove that address or "
            "route if it is a leftover (docs/hosts.md)")


def free_fleet_index(*, start: int = 0, exclude: Collection[int] = (),
                     netns: str | None = None) -> int:
    """The first fleet index from ``start`` (wrapping after 255) whose bridge does not
    exist, that no fleet has claimed (:mod:`infra.hosts.records`), that is not in
    ``exclude`` and whose subnet collides with nothing on the machine. Sessions that start
    from different places (tests pick a random ``start``) rarely race for one index.

    Two callers racing for the same index are told apart when the bridge is created (the
    loser gets an :class:`~infra.errors.InvalidRequestError` naming the winner).

    Raises:
        InvalidRequestError: every index is taken.
    """
    links = {link["ifname"] for link in _system.ip_json("link", "show", netns=netns)}
    taken = set(exclude) | claimed_fleet_indexes()
    used = machine_networks(netns=netns)
    for offset in range(MAX_FLEET_INDEX + 1):
        index = (start + offset) % (MAX_FLEET_INDEX + 1)
        if index in taken or bridge_name(index) in links:
            continue
        subnet = fleet_subnet(index)
        if any(entry.network.overlaps(subnet) for entry in used):
            continue
        return index
    raise InvalidRequestError("every fleet index (198.18.0.0/24 .. 198.18.255.0/24) is taken; "
                              "remove leftover fleets (python -m infra.hosts.cleanup --list)")
