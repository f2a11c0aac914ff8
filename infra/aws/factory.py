"""Build an :class:`AwsPlatform` from a protection request (registered as ``"aws"`` in
:mod:`infra.factory`).

The request's ``platform_spec`` holds the AWS spec's fields (as in the ``aws`` section of
``docs/aws/protection-spec.example.yaml``); ``instance_id`` and ``tier`` come from the request
itself, so the two can never disagree. Credentials, profile and endpoint come from boto3's
usual chain (instance profile, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an emulator...).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol

from infra.aws.application import PostgresApplication
from infra.aws.clients import AwsClients, AwsConnectionConfig
from infra.aws.platform import AwsPlatform
from infra.aws.spec import AwsShadowSpec
from infra.aws.spec_loader import load_spec
from infra.errors import InvalidRequestError
from infra.pulumi_engine import StackDriver


class AwsRequest(Protocol):
    """The fields of a protection request the AWS platform reads."""

    instance_id: str
    tier: int
    platform_spec: dict[str, Any]


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


def aws_spec(request: AwsRequest) -> AwsShadowSpec:
    """The validated AWS spec of ``request``.

    Raises:
        InvalidRequestError: a missing, unknown or invalid field, or an ``instance_id`` /
            ``tier`` in ``platform_spec`` that contradicts the request's own.
    """
    data = dict(request.platform_spec or {})
    for name in ("instance_id", "tier"):
        given, own = data.get(name), getattr(request, name)
        if given is not None and given != own:
            raise InvalidRequestError(
                f"platform_spec.{name} {given!r} contradicts the request's {name} {own!r}; "
                "leave it out of platform_spec"
            )
        data[name] = own
    return load_spec(data)


def activity_heartbeat(progress: str) -> None:
    """Heartbeat the Temporal activity this thread runs, if any (a no-op elsewhere).

    The platform's slow waits (Route 53 INSYNC) call it, so activities with a short
    heartbeat timeout survive them. Temporal is imported here, not at module level: infra
    stays usable (and testable) without an activity around it.
    """
    from temporalio import activity

    if activity.in_activity():
        activity.heartbeat(progress)


def build_aws_platform(request: AwsRequest, driver: StackDriver, state_dir: Path) -> AwsPlatform:
    """The AWS platform of ``request`` (``state_dir`` is unused: AWS keeps its own state)."""
    spec = aws_spec(request)
    application = PostgresApplication(spec.postgres) if spec.postgres is not None else None
    return AwsPlatform(
        spec, clients_for(spec.region), driver, application=application,
        on_wait=activity_heartbeat,
    )
