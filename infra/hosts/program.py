"""The inline Pulumi program of one instance on the hosts platform: what the control worker
owns.

1. the instance's service on the router (created when missing, never destroyed);
2. a replication slot for the standby on the serving primary;
3. the standby's router entry at weight 0;
4. once the standby streams, the tier's settings on the primary (tier 1's synchronous
   standby: commits never wait for a standby that is still copying).

The standby's data and process are not here: its host's agent creates them
(``contracts.agent.AgentActivities.seed_standby``), and the platform asks the workflow to run
that task alongside the ``up``, whose tier settings then wait for the stream
(:mod:`infra.hosts.streaming`). As on the local platform, every resource describes
the standby of the current roles and carries a ``roles`` input, so an ``up`` after a cutover
updates in place.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from infra.hosts.placement import HostsShadowSpec
from infra.hosts.router import RouterService
from infra.hosts.streaming import StandbyStreams
from infra.local.resources import PrimarySettings, ReplicationSlot, RouterEntry


def hosts_program(spec: HostsShadowSpec, *, standby_streams: bool,
                  wait_for_stream: bool = False) -> Callable[[], None]:
    """The program for ``spec``'s stack; the tier's settings when ``standby_streams``, or
    when ``wait_for_stream`` (the copy runs meanwhile) after the standby streams."""

    def program() -> None:
        primary, standby = spec.current_primary, spec.standby_node
        roles = f"{primary}>{standby}"
        conninfo = spec.endpoint_of(primary).conninfo()
        source = spec.section.router_source
        service = RouterService("router-service", {
            "haproxy_dir": str(spec.haproxy_dir), "service": spec.instance_id,
            "bind_port": spec.router_port, "server": primary,
            "address": spec.placement_of(primary).address, "port": spec.port_of(primary),
            "source": source,
        })
        slot = ReplicationSlot("slot", conninfo=conninfo, slot=spec.slot_for(standby),
                               roles=roles)
        entry = RouterEntry("router-entry", {
            "haproxy_dir": str(spec.haproxy_dir), "service": spec.instance_id,
            "server": standby, "address": spec.placement_of(standby).address,
            "port": spec.port_of(standby), "source": source, "roles": roles,
        }, pulumi.ResourceOptions(depends_on=[service]))
        if standby_streams or wait_for_stream:
            after: list[pulumi.Resource] = [slot, entry]
            if wait_for_stream:
                after.append(StandbyStreams("standby-streams", {
                    "conninfo": conninfo, "standby": standby, "roles": roles},
                    pulumi.ResourceOptions(depends_on=[slot])))
            PrimarySettings("primary-settings", {
                "conninfo": conninfo, "tier": spec.tier, "standby_name": standby,
                "archive_dir": "", "archive_interval_s": 10, "roles": roles,
                # A standby made anew on a spare host is a change: tier 1's synchronous
                # setting (relaxed while it was lost) is applied again once it streams.
                "standby_address": spec.placement_of(standby).address,
            }, pulumi.ResourceOptions(depends_on=after))
        pulumi.export("shadow_node", standby)
        pulumi.export("shadow_host", spec.host_of(standby))
        pulumi.export("primary_node", primary)
        pulumi.export("tier", spec.tier)

    return program
