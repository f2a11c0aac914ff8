"""Build, inspect and remove a fleet's bridge and hosts: converging, repeatable steps.

The Pulumi providers (:mod:`infra.hosts.resources`) and the by-hand cleanup
(:mod:`infra.hosts.cleanup`) both run these. Each build step adopts what a killed earlier
run left when it has the wanted shape and rebuilds it otherwise; each removal step accepts
"already gone". The record (:mod:`infra.hosts.records`) is written before anything is
created and removed after everything is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from infra.errors import InfraError
from infra.hosts import disk, firewall, links, network, records
from infra.hosts.cgroups import HostCgroups
from infra.hosts.spec import FleetSpec

log = logging.getLogger(__name__)


# -- bridge --------------------------------------------------------------------------------


def build_bridge(fleet: str, index: int) -> None:
    """Claim fleet ``index`` for ``fleet`` and converge its bridge and guard.

    Raises:
        InvalidRequestError: another fleet holds the index, or the subnet overlaps the
            machine's own addresses or routes.
    """
    bridge = network.bridge_name(index)
    subnet = network.fleet_subnet(index)
    network.check_range(subnet, own_links={bridge})
    records.claim_bridge(records.BridgeRecord(fleet, index, bridge))
    links.ensure_bridge(bridge, network.bridge_mac(index),
                        list(network.reserved_addresses(index)), subnet)
    firewall.apply_guard(bridge, subnet)


def bridge_problems(index: int) -> list[str]:
    """What is missing or wrong with the fleet's bridge (empty: as built)."""
    bridge = network.bridge_name(index)
    shape = links.bridge_shape(bridge)
    if shape is None:
        return ["bridge"]
    problems = []
    wanted = [f"{a}/24" for a in network.reserved_addresses(index)]
    if shape["kind"] != "bridge" or shape["mac"] != network.bridge_mac(index):
        problems.append("kind")
    if shape["addresses"] != wanted:
        problems.append("addresses")
    if not shape["up"]:
        problems.append("down")
    if not firewall.has_guard(bridge):
        problems.append("guard")
    return problems


def remove_bridge(index: int) -> None:
    """Delete the fleet's bridge and guard, and forget the claim."""
    bridge = network.bridge_name(index)
    firewall.remove_guard(bridge)
    links.delete_link(bridge)
    records.remove_bridge(bridge)


# -- host ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPlan:
    """Everything one host is made of (from the fleet spec, or from a record)."""

    fleet: str
    """The fleet's name."""
    index: int
    """The fleet index."""
    name: str
    """The host's name."""
    position: int
    """Its place in the spec (its address is ``.10 + position``)."""
    state_dir: Path
    """The fleet's state dir."""
    disk_mib: int = 256
    """Size of its data filesystem."""
    memory_mib: int | None = None
    """Memory limit (``None``: unlimited)."""
    cpu_shares: int | None = None
    """CPU weight (``None``: 1024)."""

    @property
    def netns(self) -> str:
        """Namespace and root-side veth name."""
        return network.host_netns(self.index, self.name)

    @property
    def address(self) -> IPv4Address:
        """The host's address."""
        return network.host_address(self.index, self.position)

    @property
    def subnet(self) -> IPv4Network:
        """The fleet's subnet."""
        return network.fleet_subnet(self.index)

    @property
    def host_dir(self) -> Path:
        """Folder of the image and the mount point."""
        return self.state_dir / "hosts" / self.name

    @property
    def image(self) -> Path:
        """The data filesystem's image."""
        return self.host_dir / "disk.img"

    @property
    def data_dir(self) -> Path:
        """Where the data filesystem is mounted."""
        return self.host_dir / "data"

    @property
    def cgroups(self) -> HostCgroups:
        """The host's cgroup groups."""
        return HostCgroups(self.fleet, self.name)

    @property
    def link(self) -> links.HostLink:
        """The wanted shape of its network."""
        return links.HostLink(
            netns=self.netns, bridge=network.bridge_name(self.index), address=self.address,
            subnet=self.subnet,
            root_mac=network.host_mac(self.index, self.position, root_side=True),
            host_mac=network.host_mac(self.index, self.position, root_side=False))

    def record(self) -> records.HostRecord:
        """What :mod:`infra.hosts.records` keeps of it."""
        return records.HostRecord(
            fleet=self.fleet, index=self.index, name=self.name, netns=self.netns,
            address=str(self.address), state_dir=str(self.state_dir), image=str(self.image),
            data_dir=str(self.data_dir),
            cgroups=[str(p) for p in self.cgroups.paths.values()])


def build_host(plan: HostPlan, *, fresh: bool) -> str:
    """Converge one host; returns its loop device.

    ``fresh`` (a create: Pulumi knows no such host) also resets what a previous incarnation
    may have left: its processes are killed, and it starts thawed, unpartitioned, with no
    port isolated, unthrottled and with no ballast. Without it (an update or a repair) the
    host's processes, and any fault in force (frozen, partitioned, isolated, throttled,
    full), are left as they are; a repaired network keeps the namespace, so its processes
    get their network back.
    """
    records.write_host(plan.record())
    cgroups = plan.cgroups
    cgroups.ensure()
    if fresh:
        killed = cgroups.kill_all() + _kill_namespace_members(plan.netns)
        if killed:
            log.warning("Host %s had %d leftover processes. Killed them.", plan.netns, killed)
        cgroups.thaw()
    cgroups.set_limits(memory_mib=plan.memory_mib, cpu_shares=plan.cpu_shares)
    links.ensure_host(plan.link)
    disk.create_image(plan.image, plan.disk_mib)
    device = disk.attach(plan.image)
    disk.mount(device, plan.data_dir)
    if fresh:
        firewall.clear(plan.netns)
        cgroups.unthrottle()
        disk.free(plan.data_dir)
    return device


def host_problems(plan: HostPlan) -> list[str]:
    """What is missing or wrong with a built host (empty: as built); ``["gone"]`` when
    nothing of it is left."""
    problems = links.host_problems(plan.link)
    mounted = disk.mounts_at(plan.data_dir)
    devices = disk.loop_devices(plan.image)
    if [m.source for m in mounted] != devices[:1] or len(devices) != 1:
        problems.append("disk")
    if not plan.cgroups.exists():
        problems.append("cgroups")
    elif plan.cgroups.limits() != (plan.memory_mib, plan.cpu_shares):
        problems.append("limits")
    if problems and "netns" in problems and not plan.image.exists() \
            and not plan.cgroups.exists():
        return ["gone"]
    return problems


def remove_host(plan: HostPlan) -> None:
    """Remove everything of one host: processes, mount, loop device, image and folder,
    veth pair, namespace, cgroups, record. Safe to repeat."""
    cgroups = plan.cgroups
    cgroups.kill_all()
    _kill_namespace_members(plan.netns)
    disk.unmount(plan.data_dir)
    for device in disk.loop_devices(plan.image):
        disk.detach(device)
    if disk.mounts_at(plan.data_dir):
        raise InfraError(f"{plan.data_dir} is still mounted; not removing {plan.host_dir}")
    shutil.rmtree(plan.host_dir, ignore_errors=True)
    links.delete_host(plan.netns)
    cgroups.remove()
    records.remove_host(plan.netns)


def host_plans(spec: FleetSpec) -> list[HostPlan]:
    """What each host of ``spec`` is made of, in address order."""
    return [
        HostPlan(fleet=spec.name, index=spec.index, name=host.name, position=position,
                 state_dir=spec.state_dir, disk_mib=host.disk_mib,
                 memory_mib=host.memory_mib, cpu_shares=host.cpu_shares)
        for position, host in enumerate(spec.hosts)
    ]


def plan_of(record: records.HostRecord) -> HostPlan:
    """The plan of a recorded host (sizes and limits do not matter for removal)."""
    octet = int(record.address.rsplit(".", 1)[1])
    return HostPlan(record.fleet, record.index, record.name,
                    octet - network.FIRST_HOST_OCTET, Path(record.state_dir))


def _kill_namespace_members(netns: str) -> int:
    """SIGKILL the processes in ``netns`` that are not in the host's cgroups (started
    there by hand, e.g. with ``ip netns exec``); how many."""
    pids = links.netns_pids(netns)
    for pid in pids:
        log.warning("Process %s is in host %s's namespace but not its cgroups. Killing it.",
                    pid, netns)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)
