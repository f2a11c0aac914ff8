"""The inline Pulumi program of one local shadow.

Resources and their order (Pulumi deletes in reverse):

1. replication slot on the primary (tiers 1-2);
2. data directory seeded by ``pg_basebackup`` (the spec's initial full synchronisation);
3. standby process started with ``pg_ctl``;
4. tier settings on the primary (synchronous standby only once the standby streams, so
   writes never wait for a shadow that is still copying);
5. the shadow's HAProxy entry at weight 0.

The resources describe the *standby of the current roles* (``spec.serving_node``): after a
cutover the same logical resources point at the other node. Every resource carries a
``roles`` input; when only the roles changed, providers update in place (never replace), so
an ``up`` after a cutover neither stops the new primary, nor deletes its data, nor copies
again: it records where things now are and converges what is safe to converge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from infra.local.resources import (
    PrimarySettings,
    ReplicationSlot,
    RouterEntry,
    ShadowDataDir,
    StandbyProcess,
)
from infra.local.spec import LocalShadowSpec


def data_dir_props(spec: LocalShadowSpec) -> dict[str, Any]:
    """Inputs of the data directory resource (also what an early copy is started with)."""
    streaming = spec.tier in (1, 2)
    return {
        "home": str(spec.standby_home),
        "port": spec.standby_port,
        "tier": spec.tier,
        "slot": spec.standby_slot if streaming else "",
        "compression": spec.compression,
        "standby_name": spec.standby_node,
        "roles": spec.roles,
        "archive_dir": str(spec.archive_dir),
        "replication_conninfo": spec.replication_conninfo(spec.standby_node),
        "primary_conninfo": spec.primary.conninfo(),
        "server_settings": spec.server_settings(spec.standby_node),
    }


def shadow_program(spec: LocalShadowSpec) -> Callable[[], None]:
    """Return the inline program for ``spec``'s shadow stack."""

    def program() -> None:
        streaming = spec.tier in (1, 2)
        roles = spec.roles
        depends: list[pulumi.Resource] = []
        if streaming:
            slot = ReplicationSlot(
                "slot", conninfo=spec.primary.conninfo(), slot=spec.standby_slot, roles=roles
            )
            depends.append(slot)
        data = ShadowDataDir(
            "data",
            data_dir_props(spec),
            pulumi.ResourceOptions(depends_on=depends),
        )
        standby = StandbyProcess(
            "standby",
            home=str(spec.standby_home),
            port=spec.standby_port,
            data_dir=data.out_data_dir,
            roles=roles,
        )
        settings = PrimarySettings(
            "primary-settings",
            {
                "conninfo": spec.primary.conninfo(),
                "tier": spec.tier,
                "standby_name": spec.standby_node,
                "archive_dir": str(spec.archive_dir),
                "archive_interval_s": spec.archive_interval_s,
                "roles": roles,
            },
            pulumi.ResourceOptions(depends_on=[standby]),
        )
        RouterEntry(
            "router-entry",
            {
                "haproxy_dir": str(spec.haproxy_dir),
                "service": spec.instance_id,
                "server": spec.standby_node,
                "port": spec.standby_port,
                "roles": roles,
            },
            pulumi.ResourceOptions(depends_on=[settings]),
        )
        pulumi.export("shadow_node", spec.standby_node)
        pulumi.export("shadow_port", spec.standby_port)
        pulumi.export("primary_node", spec.current_primary)
        pulumi.export("data_dir", data.out_data_dir)
        pulumi.export("seed_seconds", data.out_seed_seconds)
        pulumi.export("tier", spec.tier)

    return program
