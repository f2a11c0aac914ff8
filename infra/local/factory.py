"""Build the local platform and its fleet observer (registered as ``"local"`` in
:mod:`infra.factory`)."""

from __future__ import annotations

from contracts.shadow import PlatformRequest
from infra.local.observer import LocalObserver
from infra.local.platform import LocalPlatform
from infra.local.spec import LocalShadowSpec
from infra.platform import PlatformContext


def build_local_platform(request: PlatformRequest, context: PlatformContext) -> LocalPlatform:
    """PostgreSQL processes on this machine behind HAProxy (without a Pulumi driver in the
    context, a platform that reads and routes but cannot change stacks).

    Raises:
        InvalidRequestError: the roles are unknown.
    """
    spec = LocalShadowSpec.from_request(request, context.state_dir, context.pg_security)
    return LocalPlatform(spec, context.driver)


def build_local_observer(context: PlatformContext, metrics_period_s: int) -> LocalObserver:
    """The watcher's view of this worker's local protections (sampled at every round: the
    metrics period is for metrics services)."""
    return LocalObserver(context.state_dir)
