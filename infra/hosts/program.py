"""The inline Pulumi program of one instance on the hosts platform: what the control worker
owns.

1. the instance's service on the router (created when missing, never destroyed);
2. a replication slot for the standby on the serving primary;
3. the standby's router entry at weight 0;
4. once the standby streams, the tier's settings on the primary (tier 1's synchronous
   standby: commits never wait for a standby that is still copying).

The standby's data and process are not here: its host's agent creates them
(``contracts.agent.AgentActivities.seed_standby``), and the platform asks the workflow to
route that task between two ``up`` runs. As on the local platform, every resource describes
the standby of the current roles and carries a ``roles`` input, so an ``up`` after a cutover
updates in place.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from infra.hosts.placement import HostsShadowSpec
from infra.hosts.router import RouterService
from infra.local.resources import PrimarySettings, ReplicationSlot, RouterEntry


def hosts_program(spec: HostsShadowSpec, *, standby_streams: bool) -> Callable[[], None]:
    """The program for ``spec``'s stack; the tier's settings only when ``standby_streams``."""

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
        if standby_streams:
            PrimarySettings("primary-settings", {
                "conninfo": conninfo, "tier": spec.tier, "standby_name": standby,
                "archive_dir": "", "archive_interval_s": 10, "roles": roles,
            }, pulumi.ResourceOptions(depends_on=[slot, entry]))
        pulumi.export("shadow_node", standby)
        pulumi.export("shadow_host", spec.host_of(standby))
        pulumi.export("primary_node", primary)
        pulumi.export("tier", spec.tier)

    return program
