"""One real fleet of three namespace hosts: its network, processes inside it, and each fault."""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.hosts import _system, firewall
from infra.hosts.fleet import fleet_hosts
from infra.hosts.host import Host
from infra.hosts.spec import FleetSpec
from tests.infra.hosts.conftest import Fleets
from tests.infra.hosts.support import (
    ECHO_PORT,
    connect_errno,
    echo,
    echo_from,
    eventually,
    fleet_routes,
    ip_forward,
    root_routes,
    start_echo,
)

pytestmark = pytest.mark.integration


@dataclass
class Fleet:
    """The module's fleet, with an echo server running on every host."""

    spec: FleetSpec
    hosts: dict[str, Host]
    ip_forward_before: str
    routes_before: list[str]
    up_s: float


@pytest.fixture(scope="module")
def fleet(fleets: Fleets) -> Iterator[Fleet]:
    """Hosts ``a``, ``b`` and ``c``, each with an echo server on its own address."""
    forward, routes = ip_forward(), root_routes()
    spec = fleets.spec("a", "b", "c")
    started = time.monotonic()
    result = fleets.up(spec)
    elapsed = time.monotonic() - started
    assert result.summary == {"create": 5}  # the stack, the bridge, three hosts
    hosts = fleet_hosts(spec)
    servers = [start_echo(host) for host in hosts.values()]
    try:
        yield Fleet(spec, hosts, forward, routes, elapsed)
    finally:
        for server in servers:
            server.kill()
            server.wait()
        assert ip_forward() == forward


def test_each_host_has_one_address_and_no_way_out(fleet: Fleet) -> None:
    """A host has its address on eth0 and loopback, nothing else; one connected route, no
    default; the root namespace gained the bridge's connected /24 and nothing more."""
    spec = fleet.spec
    for position, (name, host) in enumerate(fleet.hosts.items()):
        links = _system.ip_json("addr", "show", netns=host.netns)
        addresses = {link["ifname"]: [a["local"] for a in link["addr_info"]] for link in links}
        assert addresses == {"lo": ["127.0.0.1", "::1"], "eth0": [f"198.18.{spec.index}."
                                                                   f"{10 + position}"]}, name
        routes = _system.ip_json("route", "show", "table", "main", netns=host.netns)
        assert [r["dst"] for r in routes] == [f"198.18.{spec.index}.0/24"]
        assert _system.ip_json("-6", "route", "show", "table", "main", netns=host.netns) == []
    ours = {spec.bridge, *(host.netns for host in fleet.hosts.values())}
    ipv6_routes = _system.ip_json("-6", "route", "show", "table", "all")
    assert [r for r in ipv6_routes if r.get("dev") in ours] == []  # no fe80::/64 of ours
    bridge = _system.ip_json("addr", "show", "dev", spec.bridge)[0]
    assert [a["local"] for a in bridge["addr_info"]] == [
        f"198.18.{spec.index}.{octet}" for octet in (1, 2, 3)]
    assert fleet_routes(spec) == [f"198.18.{spec.index}.0/24 {spec.bridge}"]
    gained = set(root_routes()) - set(fleet.routes_before)
    other_fleets = {r for r in gained if re.search(r" ssbr\d+$", r)} - set(fleet_routes(spec))
    assert sorted(gained - other_fleets) == fleet_routes(spec)  # other sessions' fleets aside
    assert ip_forward() == fleet.ip_forward_before


def test_root_and_hosts_reach_each_other_over_tcp(fleet: Fleet) -> None:
    """The root namespace reaches every host from CONTROL (its default source), ROUTER and
    TEMPORAL; host b reaches host a with its own address as the source."""
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    assert echo(a.address) == str(a.control)
    assert echo(a.address, source=a.router) == str(a.router)
    assert echo(a.address, source=a.temporal) == str(a.temporal)
    assert echo_from(b, a.address) == str(b.address)
    assert echo_from(a, b.address) == str(a.address)


def test_nothing_is_routed_off_the_machine(fleet: Fleet) -> None:
    """Without a default route nothing outside the /24 is reachable (no packet is even sent),
    and the fleet's guard drops what a host with a default route added by hand sends to the
    machine's own address; ip_forward stays as it was."""
    b = fleet.hosts["b"]
    index = fleet.spec.index
    for outside in ("192.0.2.2", "192.0.2.1", f"198.18.{(index + 1) % 256}.1", "198.19.0.1"):
        assert connect_errno(b, outside, 22) == "ENETUNREACH", outside
    _system.run(["ip", "-n", b.netns, "route", "add", "default", "via", str(b.control)])
    try:
        # Port 9 has no listener: without the guard the root namespace would answer RST.
        assert connect_errno(b, "192.0.2.2", 9, timeout_s=0.5) == "timeout"
        assert echo_from(b, fleet.hosts["a"].address) == str(b.address)  # the /24 still works
    finally:
        _system.run(["ip", "-n", b.netns, "route", "del", "default"])
    assert ip_forward() == fleet.ip_forward_before


@pytest.mark.parametrize(("cut", "expect_cut"), [
    (["control"], {"control"}),
    (["router"], {"router"}),
    (["temporal"], {"temporal"}),
    (["control", "router"], {"control", "router"}),
    (None, {"control", "router", "temporal", "peer"}),
])
def test_partition_cuts_exactly_the_named_peers(fleet: Fleet, cut: list[str] | None,
                                                expect_cut: set[str]) -> None:
    """A partition of host a from CONTROL, ROUTER, TEMPORAL, a set of them, or everyone cuts
    those paths and leaves every other one working; heal restores them all."""
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    sources = {"control": a.control, "router": a.router, "temporal": a.temporal}

    def working() -> set[str]:
        ok = {name for name, source in sources.items()
              if echo(a.address, source=source) == str(source)}
        return ok | ({"peer"} if echo_from(b, a.address) == str(b.address) else set())

    everything = {"control", "router", "temporal", "peer"}
    a.partition(None if cut is None else [sources[name] for name in cut])
    try:
        assert a.partitioned()
        assert working() == everything - expect_cut
    finally:
        a.heal()
    assert not a.partitioned()
    assert working() == everything


def test_partition_stops_established_connections(fleet: Fleet) -> None:
    """A connection opened before the partition gets no answer during it, and the same
    connection answers again after heal (the drop is stateless, before conntrack)."""
    a = fleet.hosts["a"]
    with socket.create_connection((str(a.address), ECHO_PORT), timeout=2) as conn:
        conn.sendall(b"before")
        assert conn.recv(100).endswith(b"before")
        a.partition([a.control])
        try:
            conn.settimeout(0.5)
            conn.sendall(b"during")
            with pytest.raises(TimeoutError):
                conn.recv(100)
        finally:
            a.heal()
        conn.settimeout(10)  # TCP retransmits "during" once the path is back
        assert conn.recv(100).endswith(b"during")


def test_isolating_a_port_cuts_only_that_port_and_survives_heal(fleet: Fleet) -> None:
    """isolate_port cuts one TCP port of host a off CONTROL, ROUTER and the other hosts
    (a connection opened before stalls too) while another port still answers and the host
    itself still reaches it over loopback; heal() does not lift it; release_port does."""
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    other = start_echo(a, ECHO_PORT + 1)
    try:
        with socket.create_connection((str(a.address), ECHO_PORT), timeout=2) as conn:
            a.isolate_port(ECHO_PORT)
            try:
                assert firewall.isolated_ports(a.netns) == {ECHO_PORT}
                conn.settimeout(0.5)
                conn.sendall(b"during")
                with pytest.raises(TimeoutError):
                    conn.recv(100)
                assert echo(a.address, source=a.router) is None
                assert echo_from(b, a.address).startswith("error")
                assert echo(a.address, ECHO_PORT + 1) == str(a.control)
                assert echo_from(a, a.address) == str(a.address)  # loopback still works
                a.heal()
                assert echo(a.address) is None
            finally:
                a.release_port(ECHO_PORT)
        assert firewall.isolated_ports(a.netns) == set()
        assert echo(a.address) == str(a.control)
        assert echo_from(b, a.address) == str(b.address)
    finally:
        other.kill()
        other.wait()


def test_processes_run_inside_the_host_and_as_postgres(fleet: Fleet) -> None:
    """popen/run put the process in the host's namespace and all four cgroups, as root or
    as the postgres user; its children inherit both; pids() lists them."""
    c = fleet.hosts["c"]
    out = c.run(["sh", "-c", "id -un; echo $HOME; cat /proc/self/cgroup; ip -br addr show eth0"],
                user="postgres").stdout
    assert out.splitlines()[0] == "postgres"
    assert out.splitlines()[1] == "/var/lib/postgresql"
    for controller in ("freezer", "memory", "cpu", "blkio"):
        assert re.search(rf":{controller}:/shadowshift/{c.fleet}/c$", out, re.M), controller
    assert str(c.address) in out
    before = c.pids()
    child = c.popen(["sh", "-c", "sleep 30 & exec sleep 30"], user="postgres")
    try:
        eventually(lambda: len(c.pids() - before) >= 2, timeout_s=5,
                   what="the process and its child are the host's")
        assert child.pid in c.pids()
    finally:
        child.kill()
        child.wait()


COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > {path}.tmp; mv {path}.tmp {path}; "
           "sleep 0.01; done")


def _counter(host: Host, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    path = host.data_dir / name
    process = host.popen(["sh", "-c", COUNTER.format(path=path)])
    eventually(lambda: _read(path) > 0, timeout_s=5, what=f"counter on {host.name}")
    return process, path


def _read(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def test_freeze_stops_every_process_and_thaw_resumes_them(fleet: Fleet) -> None:
    """While host b's counter advances 30 steps, frozen host a's stays where it was; after
    thaw it advances again."""
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    frozen_counter, frozen_path = _counter(a, "counter")
    control_counter, control_path = _counter(b, "counter")
    try:
        a.freeze()
        assert a.frozen()
        held = _read(frozen_path)
        start = _read(control_path)
        eventually(lambda: _read(control_path) >= start + 30, timeout_s=10,
                   what="the unfrozen host's counter advanced")
        assert _read(frozen_path) == held
        assert echo(a.address, timeout_s=0.3) is None  # its echo server hangs too
        a.thaw()
        assert not a.frozen()
        eventually(lambda: _read(frozen_path) > held + 5, timeout_s=5,
                   what="the thawed host's counter advances")
    finally:
        a.thaw()
        for process in (frozen_counter, control_counter):
            process.kill()
            process.wait()


def test_kill_leaves_no_process(fleet: Fleet) -> None:
    """kill() SIGKILLs every process of the host, a forking one and postgres's included,
    and returns only when none is left; the other hosts keep theirs."""
    c, b = fleet.hosts["c"], fleet.hosts["b"]
    forker = c.popen(["sh", "-c", "while :; do sleep 30 & sleep 0.02; done"])
    quiet = c.popen(["sleep", "60"], user="postgres")
    eventually(lambda: len(c.pids()) >= 5, timeout_s=5, what="host c has its processes")
    before_b = b.pids()
    killed = c.kill()
    assert c.pids() == set()
    assert killed >= 5
    assert forker.wait(timeout=5) == -9 and quiet.wait(timeout=5) == -9
    assert before_b <= b.pids()
    # The host lives on: a new process starts in it (its echo server was killed, restart it).
    server = start_echo(c)
    try:
        assert echo(c.address) == str(c.control)
    finally:
        server.kill()
        server.wait()


def test_full_disk_gives_enospc_inside_and_free_disk_recovers(fleet: Fleet) -> None:
    """After fill_disk a write+fsync inside the host fails with ENOSPC (as postgres, too);
    after free_disk the same write succeeds."""
    a = fleet.hosts["a"]
    folder = a.data_dir / "pg"
    folder.mkdir(exist_ok=True)
    os.chown(folder, pwd.getpwnam("postgres").pw_uid, -1)
    write = ["dd", "if=/dev/zero", f"of={folder}/file", "bs=64k", "count=4", "conv=fsync"]
    ballast = a.fill_disk()
    try:
        assert ballast > 0.75 * 48 * 2**20  # all the 48 MiB but ext4's journal and tables
        assert os.statvfs(a.data_dir).f_bavail == 0
        failed = a.run(write, user="postgres", check=False)
        assert failed.returncode != 0 and "No space left on device" in failed.stderr
    finally:
        assert a.free_disk() == ballast
    a.run(write, user="postgres")
    assert (folder / "file").stat().st_size == 4 * 64 * 1024


def _dd_seconds(host: Host, *args: str) -> float:
    """Seconds a ``dd`` inside ``host`` took (its own figure)."""
    out = host.run(["dd", *args], timeout_s=120).stderr
    match = re.search(r"copied, ([0-9.]+) s", out)
    assert match, out
    return float(match.group(1))


def test_throttle_slows_direct_and_fsynced_writes(fleet: Fleet) -> None:
    """With a 4 MiB/s throttle, 8 MiB written with O_DIRECT or with a final fsync, or read
    with O_DIRECT, take at least five times longer than unthrottled in the same test, at
    about the set rate; buffered writes left to the kernel's write-back are not slowed
    (cgroup v1); unthrottle restores the speed."""
    b = fleet.hosts["b"]
    target = b.data_dir / "dd"
    size = ["bs=1M", "count=8"]
    direct = ["if=/dev/zero", f"of={target}", *size, "oflag=direct"]
    fsynced = ["if=/dev/zero", f"of={target}", *size, "conv=fsync"]
    read = [f"if={target}", "of=/dev/null", "bs=1M", "iflag=direct"]
    free_direct, free_fsync, free_read = (_dd_seconds(b, *direct), _dd_seconds(b, *fsynced),
                                          _dd_seconds(b, *read))
    buffered = ["if=/dev/zero", f"of={target}-buffered", *size]
    rate = 4 * 2**20
    b.throttle_disk(rate, read_bps=rate)
    try:
        assert b.cgroups.throttled()["write"].endswith(f" {rate}")
        slow_direct, slow_fsync, slow_read = (_dd_seconds(b, *direct), _dd_seconds(b, *fsynced),
                                              _dd_seconds(b, *read))
        slow_buffered = _dd_seconds(b, *buffered)  # left to background writeback
    finally:
        b.unthrottle_disk()
    assert b.cgroups.throttled() == {}
    figures = {"direct": (free_direct, slow_direct), "fsync": (free_fsync, slow_fsync),
               "read": (free_read, slow_read)}
    print(f"throttle figures (unthrottled s, throttled s): {figures}, "
          f"buffered without fsync while throttled: {slow_buffered} s")
    for kind, (free, slow) in figures.items():
        assert slow >= 5 * free, (kind, figures)
        assert slow >= 0.7 * 8 * 2**20 / rate, (kind, figures)  # about the set rate
    assert slow_buffered < 0.5 * 8 * 2**20 / rate  # cgroup v1 does not throttle write-back
    assert _dd_seconds(b, *direct) * 5 <= slow_direct
