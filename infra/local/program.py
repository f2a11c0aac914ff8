"""The inline Pulumi program of one local shadow.

Resources and their order (Pulumi deletes in reverse):

1. replication slot on the primary (tiers 1-2);
2. data directory seeded by ``pg_basebackup`` (the spec's initial full synchronisation);
3. standby process started with ``pg_ctl``;
4. tier settings on the primary (synchronous standby only once the standby streams, so
   writes never wait for a shadow that is still copying);
5. the shadow's HAProxy entry at weight 0.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from infra.local.resources import (
    PrimarySettings,
    ReplicationSlot,
    RouterEntry,
    ShadowDataDir,
    StandbyProcess,
)
from infra.local.spec import LocalShadowSpec


def shadow_program(spec: LocalShadowSpec) -> Callable[[], None]:
    """Return the inline program for ``spec``'s shadow stack."""

    def program() -> None:
        streaming = spec.tier in (1, 2)
        depends: list[pulumi.Resource] = []
        if streaming:
            slot = ReplicationSlot("slot", conninfo=spec.primary.conninfo(), slot=spec.slot_name)
            depends.append(slot)
        data = ShadowDataDir(
            "data",
            {
                "home": str(spec.shadow_home),
                "port": spec.shadow_port,
                "tier": spec.tier,
                "slot": spec.slot_name if streaming else "",
                "compression": spec.compression,
                "standby_name": spec.shadow_node,
                "archive_dir": str(spec.archive_dir),
                "replication_conninfo": spec.replication.conninfo(),
            },
            pulumi.ResourceOptions(depends_on=depends),
        )
        standby = StandbyProcess(
            "standby",
            home=str(spec.shadow_home),
            port=spec.shadow_port,
            data_dir=data.out_data_dir,
        )
        settings = PrimarySettings(
            "primary-settings",
            {
                "conninfo": spec.primary.conninfo(),
                "tier": spec.tier,
                "standby_name": spec.shadow_node,
                "archive_dir": str(spec.archive_dir),
                "archive_interval_s": spec.archive_interval_s,
            },
            pulumi.ResourceOptions(depends_on=[standby]),
        )
        RouterEntry(
            "router-entry",
            {
                "haproxy_dir": str(spec.haproxy_dir),
                "service": spec.instance_id,
                "server": spec.shadow_node,
                "port": spec.shadow_port,
            },
            pulumi.ResourceOptions(depends_on=[settings]),
        )
        pulumi.export("shadow_node", spec.shadow_node)
        pulumi.export("shadow_port", spec.shadow_port)
        pulumi.export("data_dir", data.out_data_dir)
        pulumi.export("seed_seconds", data.out_seed_seconds)
        pulumi.export("tier", spec.tier)

    return program
