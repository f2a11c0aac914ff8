"""Pulumi dynamic providers for namespace hosts: ``Bridge`` and ``Host``.

``create`` converges on whatever a killed earlier run left (adopted when it has the wanted
shape, rebuilt otherwise, never duplicated); ``read`` reports the world as it is: a host
with nothing left reads as gone, one with parts missing or wrong reads with a non-empty
``drift`` list, which ``up`` repairs in place (after a ``refresh``); ``delete`` removes
everything and accepts "already gone".

The providers run in Pulumi's dynamic-provider host process, which unpickles them by
reference to this module; they keep no state beyond their inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from infra.hosts import build, network


def _changed(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    """Inputs that differ; outputs (``out_*``) and Pulumi's own keys (``__provider``) do not
    count."""
    return [k for k, v in news.items()
            if not k.startswith(("out_", "__")) and olds.get(k) != v]


# -- bridge --------------------------------------------------------------------------------


class BridgeProvider(ResourceProvider):
    """The fleet's bridge ``ssbr<N>``, up, with CONTROL, ROUTER and TEMPORAL on it, and the
    fleet's guard table (:mod:`infra.hosts.firewall`)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Claim the index, check the range, converge the bridge."""
        build.build_bridge(props["fleet"], int(props["index"]))
        return CreateResult(id_=props["bridge"], outs={**props, "drift": []})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Gone when the link is; otherwise what is wrong with it, as ``drift``."""
        problems = build.bridge_problems(int(props["index"]))
        if "bridge" in problems:
            return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs={**props, "drift": problems})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A new fleet or index replaces the bridge; drift is repaired in place."""
        changed = _changed(olds, news)
        replaces = [k for k in changed if k in ("fleet", "index", "bridge")]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Repair: converge again."""
        build.build_bridge(news["fleet"], int(news["index"]))
        return UpdateResult(outs={**news, "drift": []})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Delete the bridge and its guard (the hosts went first)."""
        build.remove_bridge(int(props["index"]))


class Bridge(Resource):
    """See :class:`BridgeProvider`."""

    bridge: pulumi.Output[str]

    def __init__(self, name: str, *, fleet: str, index: int,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {
            "fleet": fleet,
            "index": index,
            "bridge": network.bridge_name(index),
            "subnet": str(network.fleet_subnet(index)),
            "addresses": [str(a) for a in network.reserved_addresses(index)],
            "drift": [],
        }
        super().__init__(BridgeProvider(), name, props, opts)


# -- host ----------------------------------------------------------------------------------

_HOST_IDENTITY = ("fleet", "index", "name", "position", "state_dir", "disk_mib")
"""Inputs whose change makes another host (replaced: its data filesystem goes)."""


def _plan(props: dict[str, Any]) -> build.HostPlan:
    memory, shares = props.get("memory_mib"), props.get("cpu_shares")
    return build.HostPlan(
        fleet=props["fleet"], index=int(props["index"]), name=props["name"],
        position=int(props["position"]), state_dir=Path(props["state_dir"]),
        disk_mib=int(props["disk_mib"]),
        memory_mib=None if memory is None else int(memory),
        cpu_shares=None if shares is None else int(shares))


class HostProvider(ResourceProvider):
    """One namespace host: namespace, veth pair, data filesystem, cgroups."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Build the host from scratch or from a leftover of the same name (whose processes
        are killed: a created host starts with none)."""
        plan = _plan(props)
        device = build.build_host(plan, fresh=True)
        return CreateResult(id_=plan.netns, outs={**props, "drift": [], "out_loop": device})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Gone when nothing of it is left; otherwise what is wrong, as ``drift``."""
        problems = build.host_problems(_plan(props))
        if problems == ["gone"]:
            return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs={**props, "drift": problems})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Identity changes replace the host; limits and drift are converged in place."""
        changed = _changed(olds, news)
        replaces = [k for k in changed if k in _HOST_IDENTITY]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """New limits or a repair: converge, keeping the host's running processes."""
        device = build.build_host(_plan(news), fresh=False)
        return UpdateResult(outs={**news, "drift": [], "out_loop": device})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Kill its processes, remove its filesystem, network and cgroups."""
        build.remove_host(_plan(props))


class Host(Resource):
    """See :class:`HostProvider`."""

    address: pulumi.Output[str]
    netns: pulumi.Output[str]
    data_dir: pulumi.Output[str]
    out_loop: pulumi.Output[str]

    def __init__(self, name: str, plan: build.HostPlan,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {
            "fleet": plan.fleet,
            "index": plan.index,
            "name": plan.name,
            "position": plan.position,
            "state_dir": str(plan.state_dir),
            "disk_mib": plan.disk_mib,
            "memory_mib": plan.memory_mib,
            "cpu_shares": plan.cpu_shares,
            "address": str(plan.address),
            "netns": plan.netns,
            "data_dir": str(plan.data_dir),
            "drift": [],
            "out_loop": None,
        }
        super().__init__(HostProvider(), name, props, opts)
