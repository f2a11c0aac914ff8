"""The ``hosts`` section of a protection spec: which hosts' agents run the primary and the
shadow, and where the control worker and the router reach them.

A host is anything that runs a node agent (``shadowshift agent --host NAME``): a VM, an EC2
instance, or on a development machine a Linux network namespace (``infra/hosts``). Primary and
shadow must be on different hosts: a shadow on its primary's host dies with it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}\Z")
"""A host (and its agent's task queue suffix): what ``shadowshift agent --host`` accepts."""
MAX_SPARES = 16
"""Most spare hosts one spec may name."""
MAX_MOVES = 1000
"""Bound of :attr:`HostPlacement.moved` (a protection that moved its shadow this often has a
problem no spare host solves)."""
NAMESPACE_HOST_NAME_MAX = 9
"""Namespace hosts (``fleet_index`` set) are named ``ss<N>-<name>`` in the kernel, whose
interface names hold 15 characters (``infra.hosts.network``)."""


Role = Literal["primary", "shadow"]
"""A placement of the section: the original primary's node or the first shadow's."""


class HostsSectionError(ValueError):
    """The section is invalid; the message starts with the field it names (without
    ``hosts.``)."""


@dataclass
class HostPlacement:
    """One node's host."""

    host: str
    """The host's name (its agent serves ``shadowshift-host-<host>``)."""
    address: str
    """IPv4 address its PostgreSQL listens on, reachable from the control worker, the router
    and the other host."""
    moved: int = 0
    """Set by the protection, not by hand: how many times this node's standby has been made
    anew on a spare host after its host was lost for good. It names the standby's
    replication slot, so a lost host that comes back finds no slot to stream from: its stale
    standby can never be counted as tier 1's synchronous standby in the new one's place."""


@dataclass
class HostsSection:
    """Where the instance and its shadow run."""

    primary: HostPlacement
    """The primary's host as the protection starts (roles swap at each cutover; hosts stay)."""
    shadow: HostPlacement
    """The shadow's host: never the primary's."""
    fleet_index: int | None = None
    """Namespace hosts only (``infra/hosts``, a development or test machine): the fleet's
    index, which lets the control worker isolate a lost primary's network namespace before
    its shadow is promoted. ``None`` for real hosts: the agent's lease alone fences them."""
    router_source: str = ""
    """Address HAProxy connects to the hosts from (empty: the kernel's choice)."""
    spares: list[HostPlacement] = field(default_factory=list)
    """Hosts (with agents) that may take the shadow, in this order, when its host is lost for
    good (``policy.reshadow_after_s``); each used once. Empty: the protection stays
    ``degraded`` until the lost host returns."""

    def placement(self, role: Role) -> HostPlacement:
        """The host of ``role``'s node."""
        return self.primary if role == "primary" else self.shadow

    def with_standby_on(self, role: Role, spare: HostPlacement) -> HostsSection:
        """This section with ``role``'s node moved to ``spare``, which leaves the spares; the
        node's :attr:`HostPlacement.moved` counts the move."""
        moved = dataclasses.replace(spare, moved=self.placement(role).moved + 1)
        rest = [p for p in self.spares if p.host != spare.host]
        if role == "primary":
            return dataclasses.replace(self, primary=moved, spares=rest)
        return dataclasses.replace(self, shadow=moved, spares=rest)


def validate_hosts_section(section: HostsSection) -> None:
    """Raise :class:`HostsSectionError` naming the first wrong field."""
    spares = section.spares
    if not isinstance(spares, list) or len(spares) > MAX_SPARES:
        raise HostsSectionError(f"spares: expected a list of at most {MAX_SPARES} hosts")
    places = [("primary", section.primary), ("shadow", section.shadow)] + [
        (f"spares[{i}]", spare) for i, spare in enumerate(spares)]
    for role, place in places:
        if not isinstance(place, HostPlacement):
            raise HostsSectionError(f"{role}: expected host and address")
        if not isinstance(place.host, str) or not HOST_NAME.match(place.host):
            raise HostsSectionError(f"{role}.host {place.host!r}: use 1-31 characters of a-z, "
                                    "0-9 and '-', starting with a letter")
        _ipv4(f"{role}.address", place.address)
        moved = place.moved
        if isinstance(moved, bool) or not isinstance(moved, int) or not 0 <= moved <= MAX_MOVES:
            raise HostsSectionError(f"{role}.moved {moved!r} is outside 0..{MAX_MOVES} (the "
                                    "protection sets it; leave it out)")
    for i, (role, place) in enumerate(places[2:], start=2):
        for earlier_role, earlier in places[:i]:
            if place.host == earlier.host or place.address == earlier.address:
                raise HostsSectionError(
                    f"{role} {place.host} ({place.address}) is also {earlier_role}: a spare "
                    "must be another host, with an address of its own")
    if section.primary.host == section.shadow.host:
        raise HostsSectionError(
            f"shadow.host {section.shadow.host!r} is also the primary's host: a shadow must "
            "run on another host, or it fails with its primary")
    if section.primary.address == section.shadow.address:
        raise HostsSectionError(f"shadow.address {section.shadow.address} is also the "
                                "primary's address: two hosts cannot share one")
    index = section.fleet_index
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                              or not 0 <= index <= 255):
        raise HostsSectionError(f"fleet_index {index!r} is outside 0..255")
    if index is not None:
        for role, place in places:
            host = place.host
            if len(host) > NAMESPACE_HOST_NAME_MAX:
                raise HostsSectionError(
                    f"{role}.host {host!r}: a namespace host (fleet_index {index}) has a name "
                    f"of at most {NAMESPACE_HOST_NAME_MAX} characters (its network namespace "
                    "is ss<N>-<name>), so no such host is in the fleet")
    if section.router_source:
        _ipv4("router_source", section.router_source)


def _ipv4(name: str, value: object) -> None:
    try:
        ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        raise HostsSectionError(f"{name} {value!r}: expected an IPv4 address") from None
