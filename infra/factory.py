"""One place that turns a protection request into its platform objects.

Activities never build a platform class themselves: they call :meth:`Platforms.platform_for`,
which dispatches on the spec's ``platform`` to the builder registered for it, and the fleet
watcher reads each platform through :meth:`Platforms.observer`. Adding a platform is one
:data:`BUILDERS` entry (plus its package, its spec section and the conformance suite).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contracts.shadow import Capabilities, PlatformRequest
from infra.aws.factory import build_aws_observer, build_aws_platform
from infra.aws.platform import AwsPlatform
from infra.errors import InvalidRequestError
from infra.hosts.factory import build_hosts_observer, build_hosts_platform
from infra.hosts.platform import HostsPlatform
from infra.kubernetes.factory import build_kubernetes_observer, build_kubernetes_platform
from infra.kubernetes.platform import KubernetesPlatform
from infra.local.factory import build_local_observer, build_local_platform
from infra.local.platform import LocalPlatform
from infra.platform import FleetObserver, Platform, PlatformContext


@dataclass(frozen=True)
class PlatformBuilder:
    """How one platform is built."""

    platform: Callable[[PlatformRequest, PlatformContext], Platform]
    """``(request, context) -> Platform``; raises ``InvalidRequestError`` on bad input."""
    observer: Callable[[PlatformContext, int], FleetObserver]
    """``(context, metrics_period_s) -> FleetObserver`` (one per watcher run)."""
    capabilities: Capabilities
    """What the platform offers beyond the common core."""


BUILDERS: dict[str, PlatformBuilder] = {
    "local": PlatformBuilder(build_local_platform, build_local_observer,
                             LocalPlatform.capabilities),
    "aws": PlatformBuilder(build_aws_platform, build_aws_observer, AwsPlatform.capabilities),
    "hosts": PlatformBuilder(build_hosts_platform, build_hosts_observer,
                             HostsPlatform.capabilities),
    "kubernetes": PlatformBuilder(build_kubernetes_platform, build_kubernetes_observer,
                                  KubernetesPlatform.capabilities),
}
"""Builders per value of the spec's ``platform`` field."""


class Platforms:
    """The platforms a worker serves, with their shared context."""

    def __init__(self, context: PlatformContext,
                 builders: dict[str, PlatformBuilder] | None = None) -> None:
        self.context = context
        self._builders = builders if builders is not None else BUILDERS

    @property
    def names(self) -> list[str]:
        """Platforms served, sorted."""
        return sorted(self._builders)

    def platform_for(self, request: PlatformRequest) -> Platform:
        """The platform object of ``request``.

        Raises:
            InvalidRequestError: an unknown platform, or a request its platform refuses.
        """
        return self._builder(request.spec.platform).platform(request, self.context)

    def observer(self, platform: str, metrics_period_s: int = 60) -> FleetObserver:
        """A fresh fleet observer of ``platform``; a metrics service with a fixed period is
        read once per ``metrics_period_s``.

        Raises:
            InvalidRequestError: an unknown platform.
        """
        return self._builder(platform).observer(self.context, metrics_period_s)

    def capabilities(self, platform: str) -> Capabilities:
        """What ``platform`` offers beyond the common core.

        Raises:
            InvalidRequestError: an unknown platform.
        """
        return self._builder(platform).capabilities

    def _builder(self, platform: str) -> PlatformBuilder:
        builder = self._builders.get(platform)
        if builder is None:
            raise InvalidRequestError(
                f"platform {platform!r} has no implementation here; use one of "
                f"{', '.join(self.names)}")
        return builder
