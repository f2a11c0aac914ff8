"""The instance's service on the router, created when missing (onboarding an existing
PostgreSQL): a Pulumi dynamic provider.

The local platform expects an operator (or the demo) to have put the instance behind HAProxy;
on hosts, ShadowShift puts it there: the frontend on the control worker's machine, the serving
primary's server at weight 100. It is never removed by a destroy: clients keep using the
router after an unprotect.
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

from infra.local.haproxy import HAProxyManager, ServerEntry


class RouterServiceProvider(ResourceProvider):
    """HAProxy runs and has the service, with the primary's server."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Start HAProxy if needed; declare the service with the primary at weight 100 if it
        has none (an existing service keeps its servers and weights)."""
        manager = HAProxyManager(Path(props["haproxy_dir"]))
        manager.start()
        primary = ServerEntry(props["server"], props["address"], int(props["port"]),
                              props.get("source", ""))
        manager.ensure_service(props["service"], int(props["bind_port"]), [primary])
        manager.add_server(props["service"], primary, weight=0)  # no-op when declared
        return CreateResult(id_=props["service"], outs=props)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Only a new frontend port replaces it; a cutover (the serving node moves) changes
        nothing here: the weights belong to the cutover."""
        replaces = ["bind_port"] if olds.get("bind_port") != news.get("bind_port") else []
        changed = [k for k in news if olds.get(k) != news[k]]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Converge (HAProxy restarted from its topology if it is down)."""
        self.create(news)
        return UpdateResult(outs=news)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Present while the running HAProxy has the service."""
        manager = HAProxyManager(Path(props["haproxy_dir"]))
        present = manager.running() and props["service"] in manager.services()
        return ReadResult(id_=id_ if present else None, outs=props if present else {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Left in place on purpose: clients reach the instance through it."""
        return None


class RouterService(Resource):
    """See :class:`RouterServiceProvider`."""

    def __init__(self, name: str, props: dict[str, Any],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(RouterServiceProvider(), name, props, opts)
