"""What ShadowShift created on this machine, so cleanup knows what is ours.

A small JSON file per bridge and per host under ``/run/shadowshift/`` is written *before*
the first system object is created and removed *after* the last one is gone, so every
leftover of a killed run has a record naming its fleet, its names and its paths. ``/run`` is
the place for facts about the running system; the records of objects a reboot removed
(namespaces, bridges, mounts) read as leftovers with nothing left and clean up in no time.

Claiming a fleet index (its bridge) happens under a machine-wide ``flock``, so two sessions
that picked the same free index are told apart: the second is refused, naming the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import InvalidRequestError
from infra.hosts import _system

RUN_DIR = Path("/run/shadowshift")
"""Root of the records (and of the claim lock)."""
HOSTS_DIR = RUN_DIR / "hosts"
"""One ``<netns>.json`` per host."""
BRIDGES_DIR = RUN_DIR / "bridges"
"""One ``<bridge>.json`` per fleet bridge."""


@dataclass(frozen=True)
class BridgeRecord:
    """A fleet's claim on its index and bridge."""

    fleet: str
    """The fleet's name."""
    index: int
    """The fleet index (``198.18.<index>.0/24``)."""
    bridge: str
    """The bridge's name (``ssbr<index>``)."""


@dataclass(frozen=True)
class HostRecord:
    """Every name and path one host uses."""

    fleet: str
    """The fleet's name."""
    index: int
    """The fleet index."""
    name: str
    """The host's name in the spec."""
    netns: str
    """Network namespace (also the root side of the veth pair)."""
    address: str
    """The host's address (without prefix)."""
    state_dir: str
    """The fleet's state dir (the image and the mount point live under it)."""
    image: str
    """The data filesystem's image file."""
    data_dir: str
    """Where the data filesystem is mounted."""
    cgroups: list[str] = field(default_factory=list)
    """The host's cgroup directories, one per controller."""


def write_bridge(record: BridgeRecord) -> None:
    """Record (or re-record) a bridge; prefer :func:`claim_bridge`."""
    _write(BRIDGES_DIR / f"{record.bridge}.json", asdict(record))


def read_bridge(bridge: str) -> BridgeRecord | None:
    """The record of ``bridge`` (``None`` when there is none)."""
    data = _read(BRIDGES_DIR / f"{bridge}.json")
    return BridgeRecord(**data) if data else None


def remove_bridge(bridge: str) -> None:
    """Forget a bridge (it is gone)."""
    (BRIDGES_DIR / f"{bridge}.json").unlink(missing_ok=True)


def bridges() -> list[BridgeRecord]:
    """Every recorded bridge."""
    found = (_read(path) for path in sorted(BRIDGES_DIR.glob("*.json")))
    return [BridgeRecord(**data) for data in found if data]


def claimed_fleet_indexes() -> set[int]:
    """The fleet indexes some fleet has recorded a bridge for."""
    return {record.index for record in bridges()}


def claim_bridge(record: BridgeRecord) -> None:
    """Record that ``record.fleet`` owns ``record.bridge``, unless another fleet does.

    Another fleet's claim is stale, and taken over, when its bridge does not exist and none
    of its hosts is recorded any more (a run killed between claim and creation).

    Raises:
        InvalidRequestError: another fleet holds the index, naming it.
    """
    with machine_lock():
        check_owner(record)
        write_bridge(record)


def check_owner(record: BridgeRecord) -> None:
    """Refuse ``record``'s claim when another fleet holds the bridge (see
    :func:`claim_bridge`) or a link of that name exists that no fleet recorded.

    Raises:
        InvalidRequestError: naming the other fleet and what to do.
    """
    current = read_bridge(record.bridge)
    if current is not None and current.fleet == record.fleet:
        return
    live = _system.ok(["ip", "link", "show", "dev", record.bridge])
    if current is None:
        if live:  # made by someone else: not ours to take over (or to delete)
            raise InvalidRequestError(
                f"a link named {record.bridge} exists and no fleet recorded it: remove it "
                f"(ip link del {record.bridge}) or give fleet {record.fleet!r} another index "
                "(infra.hosts.network.free_fleet_index())")
        return
    if live or hosts(fleet=current.fleet):
        raise InvalidRequestError(
            f"fleet index {record.index} ({record.bridge}) belongs to fleet "
            f"{current.fleet!r}; give fleet {record.fleet!r} another index "
            "(infra.hosts.network.free_fleet_index()) or remove the other fleet "
            f"(python -m infra.hosts.cleanup --fleet {current.fleet})")


def write_host(record: HostRecord) -> None:
    """Record a host before anything of it is created."""
    _write(HOSTS_DIR / f"{record.netns}.json", asdict(record))


def read_host(netns: str) -> HostRecord | None:
    """The record of the host whose namespace is ``netns``."""
    data = _read(HOSTS_DIR / f"{netns}.json")
    return HostRecord(**data) if data else None


def remove_host(netns: str) -> None:
    """Forget a host (everything of it is gone)."""
    (HOSTS_DIR / f"{netns}.json").unlink(missing_ok=True)


def hosts(*, fleet: str | None = None) -> list[HostRecord]:
    """Every recorded host (of ``fleet`` only, when given)."""
    found = (_read(path) for path in sorted(HOSTS_DIR.glob("*.json")))
    records = [HostRecord(**data) for data in found if data]
    return [r for r in records if fleet is None or r.fleet == fleet]


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Hold the machine-wide lock on fleet claims (released when the holder dies, too)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(scratch, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
