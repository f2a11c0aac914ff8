"""Fleets converge: leftovers of a killed run are adopted or cleaned, never duplicated; a
fleet grows host by host, updates in place, repairs drift, and goes away completely."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from infra.errors import InvalidRequestError
from infra.hosts import _system, build, disk, firewall, network, records
from infra.hosts.fleet import check_fleet, destroy_fleet, fleet_hosts, up_fleet
from infra.hosts.host import Host
from infra.hosts.spec import FleetSpec, HostSpec
from infra.pulumi_engine import StackDriver
from tests.infra.hosts.conftest import Fleets
from tests.infra.hosts.support import (
    echo,
    echo_from,
    eventually,
    host_shape,
    leftovers_of,
    links_named,
    netns_count,
    start_echo,
)
from workers.settings import REPO_ROOT

pytestmark = pytest.mark.integration

UP_IN_CHILD = """
import json, sys
from pathlib import Path
from infra.hosts.fleet import up_fleet
from infra.hosts.spec import FleetSpec, HostSpec
from tests.infra.hosts.conftest import driver_for
args = json.loads(sys.argv[1])
spec = FleetSpec(args["name"], args["index"],
                 tuple(HostSpec(n, disk_mib=args["disk_mib"]) for n in args["hosts"]),
                 Path(args["state_dir"]))
up_fleet(driver_for(Path(args["pulumi_state_dir"])), spec)
"""


def assert_exactly_once(spec: FleetSpec) -> None:
    """Every host of ``spec`` exists once, in its built shape: one namespace, one veth, one
    loop device, one mount; the bridge once."""
    for host in spec.hosts:
        plan = next(p for p in build.host_plans(spec) if p.name == host.name)
        assert netns_count(plan.netns) == 1, plan.netns
        assert host_shape(spec, host.name) == [], plan.netns
        assert len(disk.loop_devices(plan.image)) == 1, plan.image
        assert [m.source for m in disk.mounts_at(plan.data_dir)] == disk.loop_devices(plan.image)
        assert build.host_problems(plan) == []
        assert records.read_host(plan.netns) is not None
    assert links_named(f"ss{spec.index}-") == sorted(f"ss{spec.index}-{h.name}"
                                                     for h in spec.hosts)
    assert links_named(spec.bridge) == [spec.bridge]
    assert build.bridge_problems(spec.index) == []


def test_an_up_killed_halfway_is_finished_by_the_next_up(
        fleets: Fleets, pulumi_state_dir: Path) -> None:
    """SIGKILL a worker running ``up`` as soon as the first host's namespace exists; the next
    ``up`` finishes the fleet, adopting what the dead run made, duplicating nothing."""
    spec = fleets.spec("a", "b", "c", "d")
    args = {"name": spec.name, "index": spec.index, "hosts": [h.name for h in spec.hosts],
            "disk_mib": spec.hosts[0].disk_mib, "state_dir": str(spec.state_dir),
            "pulumi_state_dir": str(pulumi_state_dir)}
    worker = subprocess.Popen([sys.executable, "-c", UP_IN_CHILD, json.dumps(args)],
                              cwd=REPO_ROOT, start_new_session=True,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    first = network.host_netns(spec.index, "a")
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not (_system.NETNS_DIR / first).exists():
            assert worker.poll() is None, "up ended before its first host existed"
            assert time.monotonic() < deadline, "the first host never appeared"
            tree = psutil.Process(worker.pid).children(recursive=True) or tree
            time.sleep(0.005)
        os.killpg(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    eventually(lambda: not any(_alive(p) for p in tree), timeout_s=15,
               what="the killed worker's Pulumi processes are gone")
    made = [h.name for h in spec.hosts if records.read_host(network.host_netns(spec.index,
                                                                               h.name))]
    print(f"killed run left records of hosts {made}")

    result = fleets.up(spec)

    print(f"the next up: {result.summary}")
    assert result.summary.get("delete", 0) == 0, result.summary
    assert_exactly_once(spec)
    hosts = fleet_hosts(spec)
    server = start_echo(hosts["a"])
    try:
        assert echo_from(hosts["d"], hosts["a"].address) == str(hosts["d"].address)
    finally:
        server.kill()
        server.wait()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_hand_made_leftovers_are_adopted_or_cleaned(fleets: Fleets) -> None:
    """Before the first ``up``: host a's namespace exists in a wrong shape with a process
    in it; host b's cgroup holds a frozen process and its image is attached twice and
    mounted; host c is complete (a create that finished unrecorded), partitioned, with a
    file on its disk. ``up`` re-plumbs a, kills the leftover processes, keeps one loop device
    for b, adopts c as it is (file kept) but healed; nothing is duplicated."""
    spec = fleets.spec("a", "b", "c")
    plans = {p.name: p for p in build.host_plans(spec)}
    build.build_bridge(spec.name, spec.index)  # so c can be complete
    a, b, c = plans["a"], plans["b"], plans["c"]

    _system.run(["ip", "netns", "add", a.netns])
    _system.run(["ip", "-n", a.netns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
    _system.run(["ip", "-n", a.netns, "addr", "add", f"198.18.{spec.index}.99/24", "dev", "d0"])
    stray = subprocess.Popen(_system.in_netns(a.netns, ["sleep", "300"]),
                             start_new_session=True)

    b.cgroups.ensure()
    hung = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$0"; exec sleep 300',
                             str(b.cgroups.procs_files[0])], start_new_session=True)
    eventually(lambda: hung.pid in b.cgroups.pids(), timeout_s=5, what="b's leftover process")
    assert b.cgroups.freeze()
    disk.create_image(b.image, b.disk_mib)
    first = _system.run(["losetup", "--find", "--show", str(b.image)]).stdout.strip()
    _system.run(["losetup", "--find", "--show", str(b.image)])
    disk.mount(first, b.data_dir)
    (b.data_dir / "kept").write_text("b's data")

    build.build_host(c, fresh=True)
    c_device = disk.loop_devices(c.image)
    (c.data_dir / "kept").write_text("c's data")
    firewall.partition(c.netns, None)
    try:
        result = fleets.up(spec)

        assert result.summary == {"create": 5}  # the stack, the bridge, three hosts
        assert_exactly_once(spec)
        assert stray.wait(timeout=10) == -signal.SIGKILL
        assert hung.wait(timeout=10) == -signal.SIGKILL
        assert b.cgroups.freezer_state() == "THAWED"
        assert (b.data_dir / "kept").read_text() == "b's data"
        assert (c.data_dir / "kept").read_text() == "c's data"
        assert disk.loop_devices(c.image) == c_device
        assert not firewall.partitioned(c.netns)
    finally:
        for process in (stray, hung):
            process.kill()
            process.wait()


def test_adding_a_host_adds_just_that_host_and_limits_update_in_place(fleets: Fleets) -> None:
    """``up`` with one more host creates only it; a host's running process survives both
    that and a change of its memory limit and CPU weight, which are updated in place (and
    bite: 256 MiB do not fit under a 64 MiB limit)."""
    spec = fleets.spec("a")
    fleets.up(spec)
    a = Host.from_spec(spec, "a")
    process = a.popen(["sleep", "300"])
    try:
        grown = FleetSpec(spec.name, spec.index, (*spec.hosts, HostSpec("b", disk_mib=48)),
                          spec.state_dir)
        assert fleets.up(grown).summary == {"same": 3, "create": 1}
        limited = FleetSpec(spec.name, spec.index,
                            (HostSpec("a", disk_mib=48, memory_mib=64, cpu_shares=256),
                             grown.hosts[1]), spec.state_dir)
        assert fleets.up(limited).summary == {"same": 3, "update": 1}
        assert a.cgroups.limits() == (64, 256)
        hog = a.run([sys.executable, "-c", "b = bytearray(256 * 2**20)"], check=False)
        assert hog.returncode == -signal.SIGKILL  # the memory cgroup's OOM killer
        assert process.poll() is None and process.pid in a.pids()
        assert_exactly_once(limited)
    finally:
        process.kill()
        process.wait()


def test_refresh_and_up_repair_what_went_missing(fleets: Fleets) -> None:
    """A host whose veth was deleted and whose disk was unmounted behind Pulumi's back is
    repaired in place by ``up(refresh=True)``: its data is still there, and the server that
    kept running in it answers again on the same address."""
    spec = fleets.spec("a", "b")
    fleets.up(spec)
    b = next(p for p in build.host_plans(spec) if p.name == "b")
    server = start_echo(Host.from_plan(b))
    try:
        (b.data_dir / "kept").write_text("data")
        _system.run(["ip", "link", "del", b.netns])
        disk.unmount(b.data_dir)
        assert "veth" in build.host_problems(b) and "disk" in build.host_problems(b)
        assert echo(b.address) is None

        result = fleets.up(spec, refresh=True)

        assert result.summary == {"same": 3, "update": 1}
        assert_exactly_once(spec)
        assert (b.data_dir / "kept").read_text() == "data"
        assert server.poll() is None
        eventually(lambda: echo(b.address) == str(network.control_address(spec.index)),
                   timeout_s=10, what="the server still in b answers again")
    finally:
        server.kill()
        server.wait()


def test_destroy_removes_everything_and_twice_is_fine(fleets: Fleets,
                                                      hosts_driver: StackDriver) -> None:
    """After ``destroy`` nothing of the fleet is left: no namespace, veth, bridge, guard,
    mount, loop device, cgroup, record or host folder, even with processes running and a
    frozen, partitioned, throttled, full host; a second destroy finds no stack."""
    spec = fleets.spec("a", "b")
    started = time.monotonic()
    up_fleet(hosts_driver, spec)
    up_s = time.monotonic() - started
    a = Host.from_spec(spec, "a")
    process = a.popen(["sleep", "300"], user="postgres")
    a.fill_disk()
    a.throttle_disk(2**20)
    a.partition(None)
    a.freeze()
    started = time.monotonic()
    assert destroy_fleet(hosts_driver, spec) is True
    destroy_s = time.monotonic() - started
    print(f"2-host fleet: up {up_s:.2f} s, destroy {destroy_s:.2f} s")
    assert process.wait(timeout=5) == -signal.SIGKILL
    assert leftovers_of(spec) == []
    assert not firewall.has_guard(spec.bridge)
    assert list((spec.state_dir / "hosts").iterdir()) == []
    assert destroy_fleet(hosts_driver, spec) is False


def test_an_index_held_by_another_fleet_is_refused(fleets: Fleets,
                                                    hosts_driver: StackDriver) -> None:
    """A second fleet asking for a live fleet's index is refused before anything is made,
    with a message naming the fleet that holds it."""
    holder = fleets.spec("a")
    fleets.up(holder)
    intruder = FleetSpec("intruder", holder.index, (HostSpec("z", disk_mib=48),),
                         holder.state_dir.parent / "intruder")
    with pytest.raises(InvalidRequestError, match=f"belongs to fleet '{holder.name}'"):
        check_fleet(intruder)
    with pytest.raises(InvalidRequestError, match=f"belongs to fleet '{holder.name}'"):
        up_fleet(hosts_driver, intruder)
    assert not hosts_driver.exists(intruder.stack_name)
    assert netns_count(network.host_netns(holder.index, "z")) == 0
    assert records.read_bridge(holder.bridge) == records.BridgeRecord(
        holder.name, holder.index, holder.bridge)


@pytest.mark.parametrize("hosts", [
    (HostSpec("a", disk_mib=48), HostSpec("a", disk_mib=48)),
    (HostSpec("replica-02", disk_mib=48),),
])
def test_a_bad_spec_creates_nothing(fleets: Fleets, hosts_driver: StackDriver,
                                    hosts: tuple[HostSpec, ...]) -> None:
    """Duplicate host names or a name too long for an interface: ``up_fleet`` refuses
    before Pulumi runs; no stack, bridge, namespace or record appears."""
    base = fleets.spec()
    spec = FleetSpec(base.name, base.index, hosts, base.state_dir)
    with pytest.raises(InvalidRequestError, match=r"twice|use at most 9"):
        up_fleet(hosts_driver, spec)
    assert not hosts_driver.exists(spec.stack_name)
    assert leftovers_of(spec) == []
    assert records.hosts(fleet=spec.name) == [] and records.read_bridge(spec.bridge) is None
    assert not spec.state_dir.exists()
