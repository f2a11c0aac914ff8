"""One place that turns a protection request into its platform object.

Activities never build a platform class themselves: they call :func:`platform_for`, which
dispatches on the request's ``platform`` field to the builder registered for it. Adding a
platform is one :data:`BUILDERS` entry (a builder takes the request, the stack driver and the
state directory and returns an :class:`~infra.platform.Platform`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from infra.aws.factory import build_aws_platform
from infra.errors import InvalidRequestError
from infra.local.platform import LocalPlatform
from infra.local.spec import LocalShadowSpec
from infra.platform import Platform
from infra.pulumi_engine import StackDriver


class PlatformRequest(Protocol):
    """What every protection request carries (``activities.shadow.ShadowRequest`` does);
    each builder reads the platform-specific fields it needs from the same object."""

    instance_id: str
    platform: str
    tier: int
    platform_spec: dict[str, Any]


PlatformBuilder = Callable[[PlatformRequest, StackDriver, Path], Platform]
"""``(request, driver, state_dir) -> Platform``; raises ``InvalidRequestError`` on bad input."""

_LOCAL_FIELDS = tuple(f.name for f in dataclasses.fields(LocalShadowSpec) if f.name != "state_dir")


def _local(request: PlatformRequest, driver: StackDriver, state_dir: Path) -> Platform:
    """PostgreSQL processes on this machine behind HAProxy.

    Fields the request shares with :class:`LocalShadowSpec` are copied by name (ports, tier,
    roles...), so a field added to both travels without touching the factory; the spec
    validates them.
    """
    values = {name: getattr(request, name) for name in _LOCAL_FIELDS if hasattr(request, name)}
    return LocalPlatform(LocalShadowSpec(state_dir=state_dir, **values), driver)


BUILDERS: dict[str, PlatformBuilder] = {
    "local": _local,
    "aws": build_aws_platform,
}
"""Builder per value of the request's ``platform`` field."""


def platform_for(request: PlatformRequest, driver: StackDriver, state_dir: Path) -> Platform:
    """The platform object of ``request``, validated.

    Raises:
        InvalidRequestError: an unknown platform, or a request its platform refuses.
    """
    builder = BUILDERS.get(request.platform)
    if builder is None:
        raise InvalidRequestError(
            f"platform {request.platform!r} has no implementation here; "
            f"use one of {', '.join(sorted(BUILDERS))}"
        )
    return builder(request, driver, state_dir)
