"""Build an :class:`AwsPlatform` from a protection request (registered as ``"aws"`` in
:mod:`infra.factory`).

The spec's ``aws`` section says where the instance runs and how traffic reaches it;
``instance_id`` and ``tier`` come from the spec itself. Credentials, profile and endpoint come
from boto3's usual chain (instance profile, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an
emulator...).
"""

from __future__ import annotations

import os
import threading

from contracts.shadow import PlatformRequest
from infra.aws.agent_platform import AwsAgentPlatform
from infra.aws.application import PostgresApplication
from infra.aws.clients import AwsClients, AwsConnectionConfig
from infra.aws.observer import AwsObserver
from infra.aws.platform import AwsPlatform
from infra.aws.spec import AwsShadowSpec
from infra.platform import PlatformContext

_clients: dict[str, AwsClients] = {}
_clients_lock = threading.Lock()


def clients_for(region: str) -> AwsClients:
    """One set of clients per region and endpoint for the worker's life (boto3 clients are
    thread-safe and slow to create: 50-320 ms each here, measured; four per platform object
    otherwise)."""
    # boto3 reads AWS_ENDPOINT_URL itself; it is part of the key so clients made for one
    # endpoint (an emulator) are never handed out for another.
    key = f"{region} {os.environ.get('AWS_ENDPOINT_URL', '')}"
    with _clients_lock:
        if key not in _clients:
            _clients[key] = AwsClients(AwsConnectionConfig(region=region))
        return _clients[key]


def activity_heartbeat(progress: str) -> None:
    """Heartbeat the Temporal activity this thread runs, if any (a no-op elsewhere).

    The platform's slow waits (Route 53 INSYNC) call it, so activities with a short
    heartbeat timeout survive them. Temporal is imported here, not at module level: infra
    stays usable (and testable) without an activity around it.
    """
    from temporalio import activity

    if activity.in_activity():
        activity.heartbeat(progress)


def build_aws_platform(request: PlatformRequest, context: PlatformContext) -> AwsPlatform:
    """The AWS platform of ``request`` (the state dir is unused: AWS keeps its own state;
    the roles are read from the instances' tags)."""
    spec = AwsShadowSpec.from_spec(request.spec)
    application = PostgresApplication(spec.postgres) if spec.postgres is not None else None
    # With an agent on the shadow's instance, the standby is copied by it (the section's
    # validation made sure the postgres section is there).
    kind = AwsAgentPlatform if spec.agent is not None else AwsPlatform
    return kind(
        spec, clients_for(spec.region), context.driver, application=application,
        on_wait=activity_heartbeat,
    )


def build_aws_observer(context: PlatformContext, metrics_period_s: int) -> AwsObserver:
    """The watcher's view of AWS protections (clients per region, from boto3's chain),
    reading CloudWatch once per ``metrics_period_s``."""
    return AwsObserver(clients_for, metrics_period_s)
