"""List and remove what namespace-host fleets left on this machine, without Pulumi.

``python -m infra.hosts.cleanup --list`` shows every recorded fleet and host and what of it
still exists; ``--fleet NAME`` removes one fleet's hosts and bridge; ``--all`` every fleet's.
The records (:mod:`infra.hosts.records`) say what is ours; a namespace ``ss<N>-*``, a cgroup
``shadowshift/<fleet>/*`` or a mount under a recorded state dir without a record is removed
with its fleet too. A fleet's Pulumi stack is not touched: destroy it (or its refresh finds
the hosts gone).
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from infra.hosts import _system, build, disk, links, network, records
from infra.hosts.cgroups import CGROUP_ROOT, PARENT, HostCgroups

log = logging.getLogger(__name__)

_NETNS = re.compile(r"^ss(\d{1,3})-([a-z][a-z0-9-]{0,8})$")
_BRIDGE = re.compile(r"^ssbr\d{1,3}$")


@dataclass(frozen=True)
class Leftover:
    """One host or bridge of a fleet and what of it exists."""

    fleet: str
    """The fleet's name (empty when nothing says which)."""
    kind: str
    """``host`` or ``bridge``."""
    name: str
    """Namespace or bridge name."""
    present: tuple[str, ...]
    """What exists (``netns``, ``mount``, ``cgroups``, ``link``, ``record``...)."""


def leftovers(*, fleet: str | None = None) -> list[Leftover]:
    """Every recorded (or recognisably ours) host and bridge, of ``fleet`` when given."""
    found = []
    for record in records.bridges():
        if fleet is None or record.fleet == fleet:
            present = ["record"] + (["link"] if _link_exists(record.bridge) else [])
            found.append(Leftover(record.fleet, "bridge", record.bridge, tuple(present)))
    seen = set()
    for host in records.hosts(fleet=fleet):
        seen.add(host.netns)
        plan = build.plan_of(host)
        present = ["record"]
        present += ["netns"] if (_system.NETNS_DIR / host.netns).exists() else []
        present += ["mount"] if disk.mounts_at(plan.data_dir) else []
        present += ["loop"] if disk.loop_devices(plan.image) else []
        present += ["cgroups"] if any(p.exists() for p in plan.cgroups.paths.values()) else []
        found.append(Leftover(host.fleet, "host", host.netns, tuple(present)))
    if fleet is None:
        for path in sorted(_system.NETNS_DIR.glob("ss*-*")):
            if _NETNS.match(path.name) and path.name not in seen:
                found.append(Leftover("", "host", path.name, ("netns",)))
        recorded = {record.bridge for record in records.bridges()}
        for link in _system.ip_json("link", "show", "type", "bridge"):
            if _BRIDGE.match(link["ifname"]) and link["ifname"] not in recorded:
                found.append(Leftover("", "bridge", link["ifname"], ("link",)))
    return found


def _link_exists(bridge: str) -> bool:
    return _system.ok(["ip", "link", "show", "dev", bridge])


def remove_fleet(fleet: str, *, index: int | None = None,
                 state_dir: Path | None = None) -> list[str]:
    """Remove every host and the bridge of ``fleet``; what was removed.

    Args:
        index: the fleet's index, when known: also removes namespaces ``ss<index>-*`` that
            have no record (none should exist: records come first) and the bridge, unless
            another fleet's record claims it.
        state_dir: the fleet's state dir, when known: also unmounts anything left under
            ``<state_dir>/hosts/``.
    """
    removed = []
    for host in records.hosts(fleet=fleet):
        build.remove_host(build.plan_of(host))
        removed.append(host.netns)
        index = host.index if index is None else index
        state_dir = state_dir or Path(host.state_dir)
    for group in sorted((CGROUP_ROOT / "freezer" / PARENT / fleet).glob("*")):
        if group.is_dir():  # a cgroup without a record
            cgroups = HostCgroups(fleet, group.name)
            cgroups.kill_all()
            cgroups.remove()
            removed.append(f"cgroups of {group.name}")
    if state_dir is not None:
        for data_dir in sorted(Path(state_dir, "hosts").glob("*/data")):
            if disk.mounts_at(data_dir):
                disk.unmount(data_dir)
                removed.append(str(data_dir))
            for device in disk.loop_devices(data_dir.parent / "disk.img"):
                disk.detach(device)
    for record in records.bridges():
        if record.fleet == fleet:
            index = record.index
    if index is not None:
        for path in sorted(_system.NETNS_DIR.glob(f"ss{index}-*")):
            if records.read_host(path.name) is None:
                links.delete_host(path.name)
                removed.append(path.name)
        owner = records.read_bridge(network.bridge_name(index))
        if owner is None or owner.fleet == fleet:
            build.remove_bridge(index)
            removed.append(network.bridge_name(index))
    return removed


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.hosts.cleanup``: list or remove leftovers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", action="store_true", help="show what is left")
    group.add_argument("--fleet", help="remove this fleet's hosts and bridge")
    group.add_argument("--all", action="store_true", help="remove every recorded fleet")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.list:
        for item in leftovers():
            print(f"{item.kind:6} {item.name:16} fleet={item.fleet or '?':24} "
                  f"present={','.join(item.present)}")
        return 0
    fleets = [args.fleet] if args.fleet else sorted(
        {r.fleet for r in records.bridges()} | {h.fleet for h in records.hosts()})
    for fleet in fleets:
        for removed in remove_fleet(fleet):
            print(f"removed {removed} (fleet {fleet})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
