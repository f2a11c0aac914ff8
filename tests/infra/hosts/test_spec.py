"""A bad fleet spec is refused with a message that says what to change (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import InvalidRequestError
from infra.hosts.spec import FleetSpec, HostSpec, validate_fleet

STATE = Path("/var/lib/shadowshift-test")


def fleet(*hosts: HostSpec, name: str = "ci", index: int = 3) -> FleetSpec:
    return FleetSpec(name, index, hosts, STATE)


def test_a_good_spec_passes_and_addresses_follow_the_order() -> None:
    """Valid names and sizes pass; addresses follow the spec's order from .10."""
    spec = validate_fleet(fleet(HostSpec("primary"), HostSpec("shadow", disk_mib=1024,
                                                              memory_mib=256, cpu_shares=512)))
    assert str(spec.address_of("shadow")) == "198.18.3.11"
    assert spec.stack_name == "hosts-ci" and spec.bridge == "ssbr3"
    assert spec.host_dir("primary") == STATE / "hosts" / "primary"


@pytest.mark.parametrize(("spec", "message"), [
    (fleet(HostSpec("a"), HostSpec("a")), "names host 'a' twice: give every host its own"),
    (fleet(HostSpec("primary-01")), "is 10 characters; use at most 9"),
    (fleet(HostSpec("Primary")), "use 1-9 characters of a-z, 0-9 and '-', starting with a"),
    (fleet(HostSpec("1st")), "starting with a letter"),
    (fleet(HostSpec("db1\n")), "use 1-9 characters of a-z"),  # a name that ends a line
    (fleet(HostSpec("a"), name="ci\n"), "fleet name 'ci\\n' is invalid"),
    (fleet(HostSpec("a"), name="CI"), "fleet name 'CI' is invalid"),
    (fleet(HostSpec("a"), index=256), "fleet index 256 is outside 0..255"),
    (fleet(HostSpec("a", disk_mib=8)), "disk_mib 8 must be an integer from 32 to 65536"),
    (fleet(HostSpec("a", memory_mib=0)), "memory_mib 0 must be an integer from 16"),
    (fleet(HostSpec("a", cpu_shares=1)), "cpu_shares 1 must be an integer from 2 to 262144"),
    (fleet(*(HostSpec(f"h{i}") for i in range(201))), "at most 200 fit its /24"),
    (FleetSpec("ci", 3, (HostSpec("a"),), Path("relative")), "must be an absolute path"),
])
def test_a_bad_spec_is_refused_saying_what_to_change(spec: FleetSpec, message: str) -> None:
    """Duplicate names, a name too long for an interface, bad characters, a bad fleet name
    or index, sizes out of range, too many hosts, a relative state dir: each is refused
    with a message naming the field and what is allowed."""
    with pytest.raises(InvalidRequestError) as refused:
        validate_fleet(spec)
    assert message in str(refused.value)


def test_the_interface_name_limit_is_explained() -> None:
    """The too-long message says why: the interface is ss<index>-<name>, 15 characters."""
    with pytest.raises(InvalidRequestError) as refused:
        validate_fleet(fleet(HostSpec("replica-02")))
    assert "ss<fleet index>-<name>" in str(refused.value)
    assert "15 characters" in str(refused.value)


def test_unknown_host_names_the_known_ones() -> None:
    """Asking a fleet for a host it does not have lists the hosts it has."""
    with pytest.raises(InvalidRequestError, match=r"no host 'c' \(hosts: a, b\)"):
        fleet(HostSpec("a"), HostSpec("b")).host("c")
