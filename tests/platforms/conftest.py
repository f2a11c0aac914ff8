"""A protected pair on each platform, for the conformance suite.

- ``local``: a PostgreSQL primary behind HAProxy and a tier-1 shadow provisioned by the local
  platform itself (real PostgreSQL, HAProxy and Pulumi).
- ``aws``: the same real PostgreSQL pair, reached through two moto EC2 instances (their
  ``shadowshift:endpoint`` tags), an ALB listener and Route 53 weighted records in a
  ``moto_server`` process. What AWS's own shadow program creates is built by hand here: the
  ``pulumi-resource-aws`` plugin cannot be built on this machine (DESIGN.md §3), so provisioning
  and destroying on AWS are outside the suite (the program is tested with Pulumi's mocks).
- ``hosts``: a primary made by its agent on one namespace host, its tier-1 shadow provisioned
  by the hosts platform (the copy by the other host's agent), HAProxy on this machine
  (``tests/platforms/hosts_pair.py``).
- ``kubernetes``: the same two hosts as the data plane of two fake nodes of the session's real
  control plane; the primary pod is the test's, the shadow pod, its claim, budget and Services
  are the platform's, placed by the real scheduler (``tests/platforms/kube_pair.py``).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pulumi
import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.agent_tasks import AgentCall, AgentTask, ServerRef
from contracts.shadow import PlatformRequest
from contracts.version import VERSION
from infra.factory import Platforms
from infra.local.haproxy import HAProxyManager
from infra.local.ports import free_ports
from infra.platform import FleetObserver, Platform, PlatformContext
from infra.pulumi_engine import StackDriver
from tests.conftest import LocalService, with_spec
from tests.infra.aws.conftest import empty_account, moto_server, point_boto3_at
from tests.infra.aws.pg_world import build_pg_world
from tests.kube_world import KubeWorld
from tests.platforms.hosts_pair import HostsWorld, hosts_world
from tests.platforms.kube_pair import KubeNodes, kube_nodes
from workers.kube_lab import grant_worker, local_volumes, primary_pod
from workers.registry import platforms
from workers.settings import Settings

PLATFORMS = ["local", "aws", "hosts", "kubernetes"]


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
    endpoints: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Node → address and port of its real PostgreSQL (for the tests' own writes)."""
    put_metrics: Callable[[float], None] = field(default=lambda load: None)
    """Give the serving node's metrics service one datapoint (nothing to do locally)."""
    supports_lifecycle: bool = True
    """Whether provisioning and destroying run here (not for aws: no provider plugin)."""
    run_agent_tasks: Callable[[list[AgentTask]], None] = field(default=lambda tasks: None)
    """Run agent tasks the platform hands out (``Platform.host_tasks``) on their hosts."""

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


@pytest.fixture(scope="module")
def hosts(temporal_env: WorkflowEnvironment) -> Iterator[HostsWorld]:
    """Two agent hosts for the module (each test protects a fresh instance on them)."""
    with hosts_world(temporal_env.client.service_client.config.target_host) as world:
        yield world


@pytest.fixture(scope="module")
def kube_hosts(kube_world: KubeWorld, hosts: HostsWorld) -> Iterator[KubeNodes]:
    """A node of the session's cluster for each of the module's hosts."""
    with kube_nodes(kube_world, hosts) as nodes:
        yield nodes


@pytest.fixture(params=PLATFORMS)
def pair(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Pair]:
    """A tier-1 protected pair on ``local``, ``aws``, ``hosts`` or ``kubernetes``."""
    if request.param == "hosts":
        yield from _hosts_pair(request.getfixturevalue("hosts"), settings)
        return
    if request.param == "kubernetes":
        yield from _kube_pair(request.getfixturevalue("kube_hosts"),
                              request.getfixturevalue("namespace"), settings)
        return
    local_service: LocalService = request.getfixturevalue("local_service")
    stack_driver: StackDriver = request.getfixturevalue("stack_driver")
    local_request = with_spec(local_service.request, tier=1)
    served = platforms(settings)
    local = served.platform_for(local_request)
    local.provision_shadow()
    _wait_streaming(local, *local.nodes())
    local.close()
    if request.param == "local":
        spec = local_request.spec
        yield Pair("local", served.platform_for(local_request), served.observer("local"),
                   local_request, served,
                   {spec.instance_id: ("127.0.0.1", spec.primary_port),
                    f"{spec.instance_id}-shadow": ("127.0.0.1", spec.shadow_port)})
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
               aws_request, aws_served,
               {node: ("127.0.0.1", port) for node, port in world.ports.items()}, put_metrics,
               supports_lifecycle=False)


def _hosts_pair(world: HostsWorld, settings: Settings) -> Iterator[Pair]:
    """A fresh instance on the module's hosts: the primary made by its agent, the shadow
    provisioned by the platform (its copy run by the other agent), the router service created
    by the provisioning. Both servers are destroyed by their agents afterwards."""
    instance_id = f"conf-{uuid.uuid4().hex[:6]}"
    port = world.next_port()
    spec = world.lab.spec(instance_id, *world.hosts, free_ports(1)[0], tier=1, port=port)
    request = PlatformRequest(spec)
    served = platforms(world.lab.worker_settings(settings))
    platform = served.platform_for(request)
    primary, shadow = platform.nodes()
    try:
        world.ensure_primary(instance_id, port)
        world.runner.provision(served.platform_for, request)
        _wait_streaming(platform, primary, shadow)
        endpoints = {node: (str(world.lab.hosts[host].address), port)
                     for node, host in zip((primary, shadow), world.hosts, strict=True)}
        yield Pair("hosts", platform, served.observer("hosts"), request, served, endpoints,
                   run_agent_tasks=world.runner.run_all)
    finally:
        platform.close()
        _destroy_servers(world, instance_id, port, (primary, shadow))
        HAProxyManager(settings.state_dir / "haproxy").stop()


def _kube_pair(nodes: KubeNodes, namespace: str, settings: Settings) -> Iterator[Pair]:
    """A fresh instance whose primary pod runs on the first host's node (its PostgreSQL made
    by that host's agent); the platform provisions the shadow pod, which the scheduler can
    only put on the other node; both servers are destroyed by their agents afterwards."""
    world = nodes.hosts
    instance_id = f"kconf-{uuid.uuid4().hex[:6]}"
    port = world.next_port()
    request = PlatformRequest(nodes.spec(namespace, instance_id, f"pg-{instance_id}", port,
                                         free_ports(1)[0]))
    grant_worker(nodes.api, namespace)  # the worker is bound to docs/kubernetes/rbac.yaml only
    served = platforms(dataclasses.replace(settings, kubeconfig=nodes.worker_kubeconfig))
    hosts = world.hosts
    with local_volumes(nodes.api, nodes.node_of, instance_id):
        world.ensure_primary(instance_id, port)
        primary_pod(nodes.api, namespace, f"pg-{instance_id}", nodes.node_of[hosts[0]], port)
        platform = served.platform_for(request)
        primary, shadow = platform.nodes()
        try:
            world.runner.provision(served.platform_for, request)
            _wait_streaming(platform, primary, shadow)
            endpoints = {node: (str(world.lab.hosts[host].address), port)
                         for node, host in zip((primary, shadow), hosts, strict=True)}
            yield Pair("kubernetes", platform, served.observer("kubernetes"), request, served,
                       endpoints, run_agent_tasks=world.runner.run_all)
        finally:
            platform.close()
            _destroy_servers(world, instance_id, port, (primary, shadow))
            HAProxyManager(settings.state_dir / "haproxy").stop()


def _destroy_servers(world: HostsWorld, instance_id: str, port: int,
                     nodes: tuple[str, str]) -> None:
    """Destroy both servers of a pair through their hosts' agents (the first host has the
    original primary); a failure is printed, so the next test still runs."""
    for node, host in zip(nodes, world.hosts, strict=True):
        call = AgentCall(VERSION, ServerRef(instance_id, node, port))
        try:
            world.runner.run(AgentTask(host, destroy=call))
        except Exception as err:  # the next test must still run
            print(f"destroying {node} on {host} failed: {err}")


def _wait_streaming(platform: Platform, primary: str, shadow: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        status = platform.replication_between(primary, shadow)
        if status.state == "streaming" and status.sync_state == "sync":
            return
        assert time.monotonic() < deadline, f"the shadow never streamed: {status}"
        time.sleep(0.1)
