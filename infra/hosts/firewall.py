"""nftables tables of our own: a fleet's guard in the root namespace, a host's partition.

Every change replaces a whole table in one ``nft -f`` transaction (add, delete, define), so
a rule set is never half applied and applying it twice is the same as once. Nothing here
touches a table that is not ours.

- The **guard** (``inet shadowshift_ssbr<N>`` in the root namespace) makes the fleet's
  subnet a closed world: packets from the bridge may only go to the subnet's addresses (a
  host given a default route by hand still cannot reach ``192.0.2.2``, which the root
  namespace would otherwise accept on any interface), packets to the subnet are accepted
  only from the bridge or the machine itself (nothing off the machine reaches CONTROL,
  ROUTER or TEMPORAL), and nothing leaves another interface with a source in the subnet.
- The **partition** (``inet shadowshift_partition`` inside a host's namespace) drops the
  host's IPv4 traffic to and from some peers, or all of it. It hooks at priority ``raw``,
  before connection tracking: established connections stop too, not just new ones.
- The **port isolation** (``inet shadowshift_isolate`` inside a host's namespace) cuts
  some TCP ports of the host off everything but the host's own loopback (a fenced server
  nobody reaches), independently of any partition.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Network

from infra.errors import InvalidRequestError
from infra.hosts import _system, records

PARTITION_TABLE = "shadowshift_partition"
"""The host-side table :func:`partition` writes."""
ISOLATE_TABLE = "shadowshift_isolate"
"""The host-side table :func:`isolate_port` writes."""


def guard_table(bridge: str) -> str:
    """The root namespace's guard table of ``bridge``."""
    return f"shadowshift_{bridge}"


def apply_guard(bridge: str, subnet: IPv4Network) -> None:
    """Install (or re-install) the fleet's guard in the root namespace."""
    table = guard_table(bridge)
    local = f'{{ "lo", "{bridge}" }}'
    _replace_table(None, table, f"""
        chain input {{
            type filter hook input priority raw; policy accept;
            iifname "{bridge}" ip daddr != {subnet} drop
            iifname != {local} ip daddr {subnet} drop
        }}
        chain output {{
            type filter hook output priority raw; policy accept;
            ip saddr {subnet} oifname != {local} drop
        }}""")


def remove_guard(bridge: str) -> None:
    """Remove the fleet's guard (gone already is fine)."""
    _delete_table(None, guard_table(bridge))


def has_guard(bridge: str) -> bool:
    """Whether the fleet's guard table exists."""
    return _has_table(None, guard_table(bridge))


def partition(netns: str, peers: Collection[IPv4Address] | None) -> None:
    """Drop the host's IPv4 traffic with ``peers`` (``None``: with everyone but itself).

    Absolute, like router weights: the new set replaces the previous one.
    """
    if peers is None:
        drop_in, drop_out, declarations = 'iifname != "lo" drop', 'oifname != "lo" drop', ""
    else:
        elements = ", ".join(sorted({str(peer) for peer in peers}, key=IPv4Address))
        if not elements:
            heal(netns)
            return
        drop_in, drop_out = "ip saddr @peers drop", "ip daddr @peers drop"
        declarations = f"""
        set peers {{
            type ipv4_addr
            elements = {{ {elements} }}
        }}"""
    body = f"""{declarations}
        chain input {{
            type filter hook input priority raw; policy accept;
            {drop_in}
        }}
        chain output {{
            type filter hook output priority raw; policy accept;
            {drop_out}
        }}"""
    _replace_table(netns, PARTITION_TABLE, body)


def heal(netns: str) -> None:
    """Remove the host's partition (none is fine)."""
    _delete_table(netns, PARTITION_TABLE)


def clear(netns: str) -> None:
    """Remove every table of ours from the host: its partition and its port isolation."""
    _delete_table(netns, PARTITION_TABLE)
    _delete_table(netns, ISOLATE_TABLE)


def partitioned(netns: str) -> bool:
    """Whether the host has a partition table."""
    return _has_table(netns, PARTITION_TABLE)


def isolate_port(netns: str, port: int) -> None:
    """Cut TCP ``port`` of the host off the network: nothing from outside the host reaches
    it and nothing it sends leaves, established connections included; the host's own
    processes still reach it over loopback (its agent can still talk to a fenced server).

    Ports live in a table of their own (``inet shadowshift_isolate``), so :func:`heal`
    does not lift an isolation and :func:`partition` does not replace it. Idempotent.
    """
    _check_port(port)
    with records.machine_lock():  # read-modify-write of the port set
        ports = isolated_ports(netns) | {port}
        _replace_table(netns, ISOLATE_TABLE, _isolation_body(ports))


def release_port(netns: str, port: int) -> None:
    """Undo :func:`isolate_port` for ``port`` (not isolated is fine)."""
    _check_port(port)
    with records.machine_lock():
        ports = isolated_ports(netns) - {port}
        if ports:
            _replace_table(netns, ISOLATE_TABLE, _isolation_body(ports))
        else:
            _delete_table(netns, ISOLATE_TABLE)


def isolated_ports(netns: str) -> set[int]:
    """The host's isolated TCP ports."""
    if not _has_table(netns, ISOLATE_TABLE):
        return set()
    listing = json.loads(_nft(netns, "-j", "list", "set", "inet", ISOLATE_TABLE, "ports"))
    for entry in listing.get("nftables", []):
        if "set" in entry:
            return {int(element) for element in entry["set"].get("elem", [])}
    return set()


def _isolation_body(ports: set[int]) -> str:
    elements = ", ".join(str(port) for port in sorted(ports))
    return f"""
        set ports {{
            type inet_service
            elements = {{ {elements} }}
        }}
        chain input {{
            type filter hook input priority raw; policy accept;
            iifname != "lo" tcp dport @ports drop
        }}
        chain output {{
            type filter hook output priority raw; policy accept;
            oifname != "lo" tcp sport @ports drop
        }}"""


def _check_port(port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidRequestError(f"port {port!r} must be an integer from 1 to 65535")


def _nft(netns: str | None, *args: str, script: str | None = None,
         check: bool = True) -> str:
    argv = ["nft", *args]
    command = _system.in_netns(netns, [_system.tool("nft"), *args]) if netns else argv
    result = _system.run(command, check=check, input_text=script)
    return result.stdout


def _replace_table(netns: str | None, table: str, body: str) -> None:
    script = f"table inet {table}\ndelete table inet {table}\ntable inet {table} {{{body}\n}}\n"
    _nft(netns, "-f", "-", script=script)


def _delete_table(netns: str | None, table: str) -> None:
    if _has_table(netns, table):
        _nft(netns, "delete", "table", "inet", table)


def _has_table(netns: str | None, table: str) -> bool:
    listing = _nft(netns, "list", "tables", "inet")
    return f"table inet {table}" in listing.splitlines()
