"""A fleet of namespace hosts as one Pulumi stack (``hosts-<fleet>``).

The program is the fleet's bridge plus one ``Host`` per spec entry (each host depends on
the bridge, so ``destroy`` removes the hosts first). Adding a host to the spec and running
:func:`up_fleet` again creates just that host; the others read as unchanged.

:func:`up_fleet` refuses a bad spec, an index another fleet holds, or a range that overlaps
the machine's own before Pulumi runs, so a refused request creates nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pulumi

from infra.hosts import network, records
from infra.hosts.build import host_plans
from infra.hosts.host import Host
from infra.hosts.resources import Bridge
from infra.hosts.resources import Host as HostResource
from infra.hosts.spec import FleetSpec, validate_fleet
from infra.pulumi_engine import ProgressCallback, StackDriver, StackResult

log = logging.getLogger(__name__)


def fleet_program(spec: FleetSpec) -> Callable[[], None]:
    """The inline Pulumi program of ``spec``'s fleet."""

    def program() -> None:
        bridge = Bridge("bridge", fleet=spec.name, index=spec.index)
        hosts = {}
        for plan in host_plans(spec):
            resource = HostResource(f"host-{plan.name}", plan,
                                    pulumi.ResourceOptions(depends_on=[bridge]))
            hosts[plan.name] = {"address": resource.address, "netns": resource.netns,
                                "data_dir": resource.data_dir}
        pulumi.export("fleet", spec.name)
        pulumi.export("index", spec.index)
        pulumi.export("bridge", bridge.bridge)
        pulumi.export("subnet", str(network.fleet_subnet(spec.index)))
        pulumi.export("hosts", hosts)

    return program


def check_fleet(spec: FleetSpec) -> None:
    """Everything :func:`up_fleet` checks before Pulumi runs.

    Raises:
        InvalidRequestError: a bad spec, an index held by another fleet, or a range that
            overlaps the machine's own addresses or routes.
    """
    validate_fleet(spec)
    network.check_range(network.fleet_subnet(spec.index), own_links={spec.bridge})
    records.check_owner(records.BridgeRecord(spec.name, spec.index, spec.bridge))


def up_fleet(driver: StackDriver, spec: FleetSpec, *, refresh: bool = False,
             on_progress: ProgressCallback | None = None) -> StackResult:
    """Create or update the fleet's stack so it matches ``spec``.

    Args:
        refresh: read every resource's real state first, so parts that went missing or
            changed behind Pulumi's back are repaired.

    Raises:
        InvalidRequestError: see :func:`check_fleet`; nothing is created.
    """
    check_fleet(spec)
    program = fleet_program(spec)
    if refresh and driver.exists(spec.stack_name):
        driver.refresh(spec.stack_name, program, on_progress=on_progress)
    return driver.up(spec.stack_name, program, on_progress=on_progress)


def destroy_fleet(driver: StackDriver, spec: FleetSpec, *,
                  on_progress: ProgressCallback | None = None) -> bool:
    """Remove every host and the bridge, then the stack; ``False`` when there was no stack."""
    return driver.destroy(spec.stack_name, fleet_program(spec), on_progress=on_progress)


def fleet_hosts(spec: FleetSpec) -> dict[str, Host]:
    """Runtime handles of ``spec``'s hosts, by name (all their names and paths follow from
    the spec, so no stack is read)."""
    return {plan.name: Host.from_plan(plan) for plan in host_plans(spec)}
