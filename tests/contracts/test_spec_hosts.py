"""The hosts section of a spec file: each mistake (the same host twice, a bad name or
address, a namespace host name the fleet cannot have, a section on the wrong platform) is
refused by the real spec loader naming the file's line and the field, before anything
starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.spec import ProtectionSpec
from workers.cli_spec import SpecFileError, load_spec_file
from workers.settings import REPO_ROOT

GOOD = """\
instance_id: db-orders
platform: hosts
tier: 1
primary_port: 5432
shadow_port: 5433
router_port: 6432
hosts:
  primary:
    host: db-eu1-a
    address: 10.0.1.21
  shadow:
    host: db-eu1-b
    address: 10.0.1.22
"""


def load(tmp_path: Path, text: str) -> ProtectionSpec:
    """Write ``text`` as a spec file and load it."""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_spec_file(path)


def test_a_good_hosts_spec_loads(tmp_path: Path) -> None:
    """Both placements load as written; fleet_index stays unset for real hosts."""
    spec = load(tmp_path, GOOD)
    section = spec.hosts
    assert section is not None
    assert (section.primary.host, section.primary.address) == ("db-eu1-a", "10.0.1.21")
    assert (section.shadow.host, section.shadow.address) == ("db-eu1-b", "10.0.1.22")
    assert section.fleet_index is None


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("    host: db-eu1-b", "    host: db-eu1-a",
         ":12: hosts.shadow.host 'db-eu1-a' is also the primary's host: a shadow must run on "
         "another host"),
        ("    address: 10.0.1.22", "    address: 10.0.1.21",
         ":13: hosts.shadow.address 10.0.1.21 is also the primary's address"),
        ("    host: db-eu1-a", "    host: DB_A",
         ":9: hosts.primary.host 'DB_A': use 1-31 characters of a-z, 0-9 and '-'"),
        ("    address: 10.0.1.22", "    address: db-b.internal",
         ":13: hosts.shadow.address 'db-b.internal': expected an IPv4 address"),
        ("    address: 10.0.1.22", "    address: 10.0.1.22\n    port: 5433",
         ":14: hosts.shadow.port: unknown field; allowed: host, address"),
        ("  shadow:\n    host: db-eu1-b\n    address: 10.0.1.22\n", "",
         ":7: hosts.shadow: required"),
        ("hosts:\n  primary:\n    host: db-eu1-a",
         "hosts:\n  fleet_index: 4\n  primary:\n    host: db-eu1-primary",
         ":10: hosts.primary.host 'db-eu1-primary': a namespace host (fleet_index 4) has a name "
         "of at most 9 characters"),
        ("hosts:\n", "hosts:\n  fleet_index: 256\n", ":8: hosts.fleet_index 256 is outside 0..255"),
        ("platform: hosts", "platform: local", ":7: hosts: only for platform hosts"),
    ],
)
def test_hosts_mistakes_name_line_and_field(
        tmp_path: Path, replace: str, by: str, expected: str) -> None:
    """Each mistake is reported as file:line: hosts.field: what is wrong."""
    assert replace in GOOD
    with pytest.raises(SpecFileError) as error:
        load(tmp_path, GOOD.replace(replace, by, 1))
    assert str(error.value).startswith(f"{tmp_path / 'spec.yaml'}{expected}"), str(error.value)


SPARES = """\
  spares:
    - host: db-eu1-c
      address: 10.0.1.23
    - host: db-eu1-d
      address: 10.0.1.24
"""


def test_spares_load_in_order(tmp_path: Path) -> None:
    """Spare hosts load as a list of placements, in the order given; a node not yet moved
    counts no move."""
    section = load(tmp_path, GOOD + SPARES).hosts
    assert section is not None
    assert [(p.host, p.address, p.moved) for p in section.spares] == [
        ("db-eu1-c", "10.0.1.23", 0), ("db-eu1-d", "10.0.1.24", 0)]
    moved = section.with_standby_on("shadow", section.spares[1])
    assert (moved.shadow.host, moved.shadow.moved) == ("db-eu1-d", 1)
    assert [p.host for p in moved.spares] == ["db-eu1-c"]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("      address: 10.0.1.24", "      address: 10.0.1.22",
         "hosts.spares[1] db-eu1-d (10.0.1.22) is also shadow: a spare must be another host"),
        ("    - host: db-eu1-c", "    - host: db-eu1-a",
         "hosts.spares[0] db-eu1-a (10.0.1.23) is also primary"),
        ("    - host: db-eu1-d", "    - host: db-eu1-c",
         "hosts.spares[1] db-eu1-c (10.0.1.24) is also spares[0]"),
        ("      address: 10.0.1.23", "      address: ten",
         "hosts.spares[0].address 'ten': expected an IPv4 address"),
        ("    - host: db-eu1-c\n      address: 10.0.1.23\n", "    - host: db-eu1-c\n",
         "hosts.spares[0].address: required"),
        ("  spares:\n", "  spares: db-eu1-c\n  other:\n", "hosts.spares: expected a list"),
    ],
)
def test_spare_mistakes_are_named(tmp_path: Path, replace: str, by: str, expected: str) -> None:
    """A spare that is another placement (or another spare), a bad address, a missing field
    or not a list is refused, naming the spare."""
    text = GOOD + SPARES
    assert replace in text
    with pytest.raises(SpecFileError) as error:
        load(tmp_path, text.replace(replace, by, 1))
    assert expected in str(error.value), str(error.value)


def test_platform_hosts_without_the_section_is_refused(tmp_path: Path) -> None:
    """``platform: hosts`` needs the section, and the message says what it holds."""
    with pytest.raises(SpecFileError, match=r":2: platform hosts needs the hosts section"):
        load(tmp_path, GOOD[:GOOD.index("hosts:\n")])


def test_the_vm_fleet_spec_in_the_operations_guide_loads(tmp_path: Path) -> None:
    """The spec shown in docs/operations.md's VM fleet section is valid as written: the real
    loader reads its hosts section with the placements the text describes."""
    guide = (REPO_ROOT / "docs" / "operations.md").read_text()
    section = guide[guide.index("### 4. The spec and `shadowshift protect`"):]
    start = section.index("```yaml\n") + len("```yaml\n")
    spec = load(tmp_path, section[start:section.index("```\n", start)])
    assert (spec.platform, spec.tier, spec.router_port) == ("hosts", 1, 6432)
    section_hosts = spec.hosts
    assert section_hosts is not None
    assert (section_hosts.primary.host, section_hosts.primary.address) == \
        ("db-eu1-a", "10.0.1.21")
    assert (section_hosts.shadow.host, section_hosts.shadow.address) == \
        ("db-eu1-b", "10.0.1.22")
    assert section_hosts.fleet_index is None
