"""A protected pair on each platform, for the conformance suite.

- ``local``: a PostgreSQL primary behind HAProxy and a tier-1 shadow provisioned by the local
  platform itself (real PostgreSQL, HAProxy and Pulumi).
- ``aws``: the same real PostgreSQL pair, reached through two moto EC2 instances (their
  ``shadowshift:endpoint`` tags), an ALB listener and Route 53 weighted records in a
  ``moto_server`` process. What AWS's own shadow program creates is built by hand here: the
  ``pulumi-resource-aws`` plugin cannot be built on this machine (DESIGN.md §3), so provisioning
  and destroying on AWS are outside the suite (the program is tested with Pulumi's mocks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pulumi
import pytest

from contracts.shadow import PlatformRequest
from infra.factory import Platforms
from infra.platform import FleetObserver, Platform, PlatformContext
from infra.pulumi_engine import StackDriver
from tests.conftest import LocalService, with_spec
from tests.infra.aws.conftest import empty_account, moto_server, point_boto3_at
from tests.infra.aws.pg_world import build_pg_world
from workers.registry import platforms
from workers.settings import Settings

PLATFORMS = ["local", "aws"]


@dataclass
class Pair:
    """One protected instance on a platform under test, original roles."""

    name: str
    """The platform's name."""
    platform: Platform
    """Built by the factory from :attr:`request`."""
    observer: FleetObserver
    """The platform's fleet observer."""
    request: PlatformRequest
    """The protection request."""
    served: Platforms
    """The factory the pair was built with (to rebuild with other roles)."""
    ports: dict[str, int] = field(default_factory=dict)
    """Node → port of its real PostgreSQL on this machine (for the tests' own writes)."""
    put_metrics: Callable[[float], None] = field(default=lambda load: None)
    """Give the serving node's metrics service one datapoint (nothing to do locally)."""
    supports_lifecycle: bool = True
    """Whether provisioning and destroying run here (not for aws: no provider plugin)."""

    @property
    def nodes(self) -> tuple[str, str]:
        """(original primary, shadow)."""
        return self.platform.nodes()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """One moto_server process for the module."""
    with moto_server() as url:
        yield url


def _weights_program() -> None:
    """Stands in for the AWS shadow program: it keeps the weights config the platform records
    (a later ``up`` of the real program reads it)."""
    raw = pulumi.Config("shadowshift").get("weights")
    pulumi.export("weights", json.loads(raw) if raw else {})


@pytest.fixture(params=PLATFORMS)
def pair(request: pytest.FixtureRequest, settings: Settings, local_service: LocalService,
         stack_driver: StackDriver) -> Iterator[Pair]:
    """A tier-1 protected pair on ``local`` or ``aws``."""
    local_request = with_spec(local_service.request, tier=1)
    served = platforms(settings)
    local = served.platform_for(local_request)
    local.provision_shadow()
    _wait_streaming(local, *local.nodes())
    local.close()
    if request.param == "local":
        spec = local_request.spec
        yield Pair("local", served.platform_for(local_request), served.observer("local"),
                   local_request, served, {spec.instance_id: spec.primary_port,
                                           f"{spec.instance_id}-shadow": spec.shadow_port})
        return
    moto_url = request.getfixturevalue("moto_url")
    monkeypatch = request.getfixturevalue("monkeypatch")
    point_boto3_at(moto_url, monkeypatch)
    clients = empty_account(moto_url)
    spec = local_request.spec
    world = build_pg_world(clients, spec.instance_id, spec.primary_port, spec.shadow_port)
    aws_request = world.request(1)
    stack_driver.up(f"aws-shadow-{spec.instance_id}", _weights_program)
    aws_served = Platforms(PlatformContext(stack_driver, settings.state_dir))

    def put_metrics(load: float) -> None:
        instance = [{"Name": "InstanceId", "Value": world.primary_ec2}]
        clients.cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=[{
            "MetricName": "CPUUtilization", "Dimensions": instance, "Value": 10 + 80 * load,
            "Timestamp": datetime.now(UTC), "StorageResolution": 1}])

    yield Pair("aws", aws_served.platform_for(aws_request), aws_served.observer("aws", 1),
               aws_request, aws_served, dict(world.ports), put_metrics,
               supports_lifecycle=False)


def _wait_streaming(platform: Platform, primary: str, shadow: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        status = platform.replication_between(primary, shadow)
        if status.state == "streaming" and status.sync_state == "sync":
            return
        assert time.monotonic() < deadline, f"the shadow never streamed: {status}"
        time.sleep(0.1)
