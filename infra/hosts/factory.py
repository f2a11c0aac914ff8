"""Build the hosts platform and its fleet observer (registered as ``"hosts"`` in
:mod:`infra.factory`)."""

from __future__ import annotations

from contracts.shadow import PlatformRequest
from infra.hosts.observer import HostsObserver
from infra.hosts.placement import HostsShadowSpec
from infra.hosts.platform import HostsPlatform
from infra.platform import PlatformContext


def build_hosts_platform(request: PlatformRequest, context: PlatformContext) -> HostsPlatform:
    """Primary and shadow on two agent hosts, routed by this worker's HAProxy.

    Raises:
        InvalidRequestError: no hosts section, unknown roles, or a tier hosts cannot serve.
    """
    spec = HostsShadowSpec.from_request(request, context.state_dir,
                                        context.pg_security.sslmode,
                                        context.pg_security.server_ca)
    return HostsPlatform(spec, context.driver)


def build_hosts_observer(context: PlatformContext, metrics_period_s: int) -> HostsObserver:
    """The watcher's view of this worker's protections on hosts."""
    return HostsObserver(context.state_dir, server_ca=context.pg_security.server_ca)
