"""What a fleet of namespace hosts should look like, and the checks that refuse a bad one."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from infra.errors import InvalidRequestError
from infra.hosts import network

HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,8}\Z")
"""1-9 characters of a-z, 0-9 and ``-``, starting with a letter: ``ss<index>-<name>`` must
fit Linux's 15-character interface names with a three-digit index."""
FLEET_NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}\Z")
"""1-24 characters of a-z, 0-9 and ``-``, starting with a letter (stack and cgroup names)."""
MIN_DISK_MIB = 32
"""Smallest data filesystem: ext4 with its journal and room for a small cluster."""
MAX_DISK_MIB = 64 * 1024
"""Largest data filesystem (the image is sparse, but "disk full" fills it for real)."""
MIN_MEMORY_MIB = 16
"""Smallest memory limit worth setting (below it a shell barely starts)."""
CPU_SHARES_RANGE = (2, 262144)
"""What cgroup v1's ``cpu.shares`` accepts (1024 is a normal process group's share)."""


@dataclass(frozen=True)
class HostSpec:
    """One namespace host."""

    name: str
    """1-9 characters of a-z, 0-9 and ``-``, starting with a letter; unique in its fleet."""
    disk_mib: int = 256
    """Size of its data filesystem in MiB (a sparse image: unused space costs nothing)."""
    memory_mib: int | None = None
    """Memory limit of the host's cgroup (``None``: unlimited)."""
    cpu_shares: int | None = None
    """CPU weight of the host's cgroup (``None``: the default 1024)."""


@dataclass(frozen=True)
class FleetSpec:
    """A fleet: one bridge and its hosts, under one state dir."""

    name: str
    """1-24 characters of a-z, 0-9 and ``-``: the stack is ``hosts-<name>``."""
    index: int
    """Fleet index 0..255: the fleet uses ``198.18.<index>.0/24`` and bridge ``ssbr<index>``
    (:func:`infra.hosts.network.free_fleet_index` picks a free one)."""
    hosts: tuple[HostSpec, ...] = field(default_factory=tuple)
    """The hosts, in address order (``.10`` upward): append new ones at the end."""
    state_dir: Path = Path("/var/lib/shadowshift")
    """Holds ``hosts/<name>/disk.img`` and the mount point ``hosts/<name>/data``."""

    @property
    def stack_name(self) -> str:
        """The fleet's Pulumi stack."""
        return f"hosts-{self.name}"

    @property
    def bridge(self) -> str:
        """The fleet's bridge."""
        return network.bridge_name(self.index)

    def host(self, name: str) -> HostSpec:
        """The host called ``name``.

        Raises:
            InvalidRequestError: no host of that name, naming the ones there are.
        """
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise InvalidRequestError(f"fleet {self.name} has no host {name!r} (hosts: {known})")

    def address_of(self, name: str) -> IPv4Address:
        """The address of host ``name``."""
        position = self.hosts.index(self.host(name))
        return network.host_address(self.index, position)

    def host_dir(self, name: str) -> Path:
        """The folder of host ``name``'s image and mount point."""
        return self.state_dir / "hosts" / name


def validate_fleet(spec: FleetSpec) -> FleetSpec:
    """Return ``spec`` if every name, size and count in it is usable.

    Raises:
        InvalidRequestError: saying which field is wrong and what to change.
    """
    if not isinstance(spec.name, str) or not FLEET_NAME.match(spec.name):
        raise InvalidRequestError(
            f"fleet name {spec.name!r} is invalid: use 1-24 characters of a-z, 0-9 and '-', "
            "starting with a letter")
    network.fleet_subnet(spec.index)  # refuses an index outside 0..255
    if not Path(spec.state_dir).is_absolute():
        raise InvalidRequestError(f"fleet {spec.name}: state_dir {str(spec.state_dir)!r} must "
                                  "be an absolute path")
    if len(spec.hosts) > network.MAX_HOSTS:
        raise InvalidRequestError(
            f"fleet {spec.name} has {len(spec.hosts)} hosts; at most {network.MAX_HOSTS} fit "
            "its /24 (addresses .10 to .209): split it into several fleets")
    seen: set[str] = set()
    for host in spec.hosts:
        _validate_host(spec.name, host)
        if host.name in seen:
            raise InvalidRequestError(f"fleet {spec.name} names host {host.name!r} twice: give "
                                      "every host its own name")
        seen.add(host.name)
    return spec


def _validate_host(fleet: str, host: HostSpec) -> None:
    name = host.name
    if not isinstance(name, str) or not HOST_NAME.match(name):
        too_long = isinstance(name, str) and len(name) > 9
        reason = (f"is {len(name)} characters; use at most 9" if too_long
                  else "is invalid; use 1-9 characters of a-z, 0-9 and '-', starting with a "
                  "letter")
        raise InvalidRequestError(
            f"fleet {fleet}: host name {name!r} {reason} (its interface is named "
            f"ss<fleet index>-<name>, and Linux interface names hold "
            f"{network.INTERFACE_NAME_MAX} characters)")
    if not _int_in(host.disk_mib, MIN_DISK_MIB, MAX_DISK_MIB):
        raise InvalidRequestError(f"fleet {fleet}, host {name}: disk_mib {host.disk_mib!r} must "
                                  f"be an integer from {MIN_DISK_MIB} to {MAX_DISK_MIB}")
    if host.memory_mib is not None:
        total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        if not _int_in(host.memory_mib, MIN_MEMORY_MIB, total_mib):
            raise InvalidRequestError(
                f"fleet {fleet}, host {name}: memory_mib {host.memory_mib!r} must be an "
                f"integer from {MIN_MEMORY_MIB} to this machine's {total_mib} (or None: "
                "unlimited)")
    low, high = CPU_SHARES_RANGE
    if host.cpu_shares is not None and not _int_in(host.cpu_shares, low, high):
        raise InvalidRequestError(f"fleet {fleet}, host {name}: cpu_shares {host.cpu_shares!r} "
                                  f"must be an integer from {low} to {high} (or None: 1024)")


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
