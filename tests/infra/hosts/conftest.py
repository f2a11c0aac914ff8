"""Fixtures for namespace-host tests: a Pulumi driver per module, fleets that always go away.

Every fleet a test makes has a unique name and a free index; teardown destroys its stack
and then, as a safety net, removes anything of that fleet a failed destroy left
(:func:`infra.hosts.cleanup.remove_fleet`), and checks nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.hosts import cleanup, network, records
from infra.hosts.fleet import destroy_fleet, up_fleet
from infra.hosts.spec import FleetSpec, HostSpec
from infra.pulumi_engine import StackDriver, StackResult
from tests.infra.hosts.support import leftovers_of
from workers.registry import pulumi_config
from workers.settings import load_settings


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "namespace hosts need root (network namespaces, cgroups, loop devices)"
    if not Path("/sys/fs/cgroup/freezer").is_dir():
        return "namespace hosts need cgroup v1 (no /sys/fs/cgroup/freezer)"
    return None


@pytest.fixture(scope="module")
def machine_can_host() -> None:
    """Skip on machines that cannot make hosts at all; fail when only set-up is missing."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if not (shutil.which("nft") or Path("/usr/sbin/nft").exists()):
        pytest.fail("nft is missing: run `make setup` (scripts/setup-system.sh installs "
                    "nftables)")


@pytest.fixture(scope="module")
def pulumi_state_dir(tmp_path_factory: pytest.TempPathFactory, machine_can_host: None) -> Path:
    """A ShadowShift state dir of the module's own: its ``file://`` backend, passphrase."""
    base = tmp_path_factory.mktemp("pulumi")
    base.chmod(0o755)
    state_dir = base / "state"
    state_dir.mkdir()
    (state_dir / "pulumi-passphrase").write_text("test-passphrase\n")
    return state_dir


def driver_for(state_dir: Path) -> StackDriver:
    """The Pulumi driver a worker on ``state_dir`` would use."""
    return StackDriver(pulumi_config(load_settings({"SHADOWSHIFT_STATE_DIR": str(state_dir)})))


@pytest.fixture(scope="module")
def hosts_driver(pulumi_state_dir: Path) -> StackDriver:
    """A Pulumi driver on the module's own backend."""
    return driver_for(pulumi_state_dir)


@dataclass
class Fleets:
    """Makes fleets with unique names and free indexes, and removes them all at the end."""

    driver: StackDriver
    """The module's Pulumi driver."""
    base_dir: Path
    """Parent of each fleet's state dir."""
    made: list[FleetSpec] = field(default_factory=list)
    """Every fleet handed out."""

    def spec(self, *names: str, disk_mib: int = 48, **host_fields: int) -> FleetSpec:
        """A fleet of hosts ``names`` with a unique name and a free index."""
        name = f"t{uuid.uuid4().hex[:8]}"
        index = network.free_fleet_index(start=random.randrange(256),
                                         exclude={s.index for s in self.made})
        hosts = tuple(HostSpec(n, disk_mib=disk_mib, **host_fields) for n in names)
        spec = FleetSpec(name, index, hosts, self.base_dir / name)
        self.made.append(spec)
        return spec

    def up(self, spec: FleetSpec, **kwargs: bool) -> StackResult:
        """``up_fleet`` on the module's driver."""
        return up_fleet(self.driver, spec, **kwargs)

    def remove_all(self) -> list[str]:
        """Destroy every fleet, clean what a destroy left; what was still left over."""
        problems = []
        for spec in self.made:
            with contextlib.suppress(Exception):
                destroy_fleet(self.driver, spec)
            left = leftovers_of(spec)
            if left:
                problems.append(f"{spec.name}: {left}")
                cleanup.remove_fleet(spec.name, index=spec.index, state_dir=spec.state_dir)
        return problems


@pytest.fixture(scope="module")
def fleets(hosts_driver: StackDriver, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Fleets]:
    """Fleets for the module; all destroyed (and checked gone) at its end."""
    base = tmp_path_factory.mktemp("fleets")
    base.chmod(0o755)
    made = Fleets(hosts_driver, base)
    try:
        yield made
    finally:
        problems = made.remove_all()
        records_left = [r.netns for r in records.hosts() if r.fleet in
                        {s.name for s in made.made}]
        assert not problems and not records_left, (problems, records_left)
