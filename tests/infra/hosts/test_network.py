"""The address plan, and the range check that refuses a fleet overlapping the machine's own
addresses or routes (shown in a scratch namespace that plays an overlapping machine)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from infra.errors import InvalidRequestError
from infra.hosts import _system, network, records
from workers.settings import REPO_ROOT


def test_the_plan_gives_each_fleet_its_own_slash_24_and_reserved_addresses() -> None:
    """Fleet N: 198.18.N.0/24, bridge ssbrN, CONTROL .1 (first, so primary), ROUTER .2,
    TEMPORAL .3, hosts from .10 in spec order; all inside 198.18.0.0/15."""
    assert network.fleet_subnet(7) == IPv4Network("198.18.7.0/24")
    assert network.bridge_name(7) == "ssbr7"
    assert network.reserved_addresses(7) == (IPv4Address("198.18.7.1"),
                                             IPv4Address("198.18.7.2"),
                                             IPv4Address("198.18.7.3"))
    assert network.host_address(7, 0) == IPv4Address("198.18.7.10")
    assert network.host_address(255, 199) == IPv4Address("198.18.255.209")
    assert all(network.fleet_subnet(i).subnet_of(network.FLEET_RANGE) for i in range(256))
    with pytest.raises(InvalidRequestError, match=r"outside 0\.\.199"):
        network.host_address(7, 200)
    with pytest.raises(InvalidRequestError, match="free_fleet_index"):
        network.fleet_subnet(256)


def test_interface_names_fit_linux_limit_and_macs_are_distinct() -> None:
    """The longest host interface name (index 255, a 9-character host) is 15 characters;
    every MAC of a fleet (bridge, both veth ends of 200 hosts) is distinct."""
    assert len(network.host_netns(255, "abcdefghi")) == network.INTERFACE_NAME_MAX
    assert len(network.bridge_name(255)) <= network.INTERFACE_NAME_MAX
    macs = {network.bridge_mac(255)}
    for position in range(network.MAX_HOSTS):
        macs |= {network.host_mac(255, position, root_side=side) for side in (True, False)}
    assert len(macs) == 1 + 2 * network.MAX_HOSTS


@pytest.fixture
def overlapping_machine(machine_can_host: None) -> Iterator[str]:
    """A scratch network namespace whose own address 198.18.0.1/18 and route
    198.18.64.0/18 overlap fleets 0-127 (a machine that already uses part of the range)."""
    name = f"ssx{uuid.uuid4().hex[:8]}"
    _system.run(["ip", "netns", "add", name])
    try:
        _system.run(["ip", "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
        _system.run(["ip", "-n", name, "link", "set", "d0", "up"])
        _system.run(["ip", "-n", name, "addr", "add", "198.18.0.1/18", "dev", "d0"])
        _system.run(["ip", "-n", name, "route", "add", "198.18.64.0/18", "dev", "d0"])
        yield name
    finally:
        _system.run(["ip", "netns", "delete", name])


@pytest.mark.integration
def test_an_overlapping_range_is_refused_naming_both(overlapping_machine: str) -> None:
    """A fleet whose /24 lies in the machine's address or route is refused with both
    ranges named; one outside them passes; the real machine has no overlap at all."""
    with pytest.raises(InvalidRequestError) as address_overlap:
        network.check_range(network.fleet_subnet(5), netns=overlapping_machine)
    assert "198.18.5.0/24" in str(address_overlap.value)
    assert "198.18.0.1/18 on d0" in str(address_overlap.value)
    with pytest.raises(InvalidRequestError) as route_overlap:
        network.check_range(network.fleet_subnet(70), netns=overlapping_machine)
    assert "198.18.70.0/24" in str(route_overlap.value)
    assert "198.18.64.0/18" in str(route_overlap.value)
    network.check_range(network.fleet_subnet(200), netns=overlapping_machine)
    for index in (0, 5, 70, 200):
        network.check_range(network.fleet_subnet(index))  # the machine itself: no overlap
    assert network.free_fleet_index(netns=overlapping_machine) >= 128


REFUSED_UP = """
import json, sys
from pathlib import Path
from infra.errors import InvalidRequestError
from infra.hosts.fleet import up_fleet
from infra.hosts.spec import FleetSpec, HostSpec
from infra.pulumi_engine import PulumiConfig, StackDriver
args = json.loads(sys.argv[1])
driver = StackDriver(PulumiConfig(backend_url="file://" + args["backend"],
                                  passphrase_file=Path(args["backend"]) / "passphrase",
                                  work_root=Path(args["backend"]) / "work"))
spec = FleetSpec(args["name"], 5, (HostSpec("a"),), Path(args["backend"]) / "fleet")
try:
    up_fleet(driver, spec)
except InvalidRequestError as err:
    print(json.dumps({"refused": str(err), "stack": driver.exists(spec.stack_name)}))
"""


@pytest.mark.integration
def test_up_on_an_overlapping_machine_creates_nothing(overlapping_machine: str,
                                                      tmp_path: Path) -> None:
    """``up_fleet`` run inside the overlapping namespace (its root namespace, as far as it
    can tell) refuses before Pulumi runs: no stack, no namespace, no record, no bridge."""
    name = f"t{uuid.uuid4().hex[:8]}"
    args = json.dumps({"backend": str(tmp_path), "name": name})
    result = subprocess.run(
        _system.in_netns(overlapping_machine, [sys.executable, "-c", REFUSED_UP, args]),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True)
    outcome = json.loads(result.stdout)
    assert "overlaps this machine's address 198.18.0.1/18 on d0" in outcome["refused"]
    assert outcome["stack"] is False
    assert records.hosts(fleet=name) == []
    assert all(record.fleet != name for record in records.bridges())
    assert not (tmp_path / "fleet").exists()
