"""The platform factory: one dispatch on the spec's ``platform`` field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from contracts.shadow import Capabilities, PlatformRequest
from contracts.spec import ProtectionSpec
from contracts.spec_kubernetes import KubernetesSection
from infra.aws.observer import AwsObserver
from infra.errors import InfraError, InvalidRequestError
from infra.factory import BUILDERS, PlatformBuilder, Platforms
from infra.local.observer import LocalObserver
from infra.local.platform import LocalPlatform
from infra.platform import FleetObserver, Platform, PlatformContext
from infra.pulumi_engine import StackDriver
from tests.conftest import local_request

REQUEST = local_request("orders-db", 15432, 15433, 15434, tier=1)


def _platforms(driver: StackDriver | None, state_dir: Path) -> Platforms:
    return Platforms(PlatformContext(driver, state_dir))


def test_local_request_builds_the_local_platform(stack_driver: StackDriver, tmp_path: Path) -> None:
    """A local spec builds the local platform, with its ports, tier and roles."""
    served = _platforms(stack_driver, tmp_path)
    platform = served.platform_for(dataclasses.replace(REQUEST, serving_node="orders-db-shadow"))
    assert isinstance(platform, LocalPlatform)
    assert platform.nodes() == ("orders-db", "orders-db-shadow")
    assert (platform.spec.shadow_port, platform.spec.tier) == (15433, 1)
    assert platform.spec.current_primary == "orders-db-shadow"
    assert platform.other_node("orders-db") == "orders-db-shadow"
    assert isinstance(served.observer("local"), LocalObserver)
    assert isinstance(served.observer("aws"), AwsObserver)
    assert served.capabilities("local").rejoin and not served.capabilities("aws").rejoin


def test_unknown_platform_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    """An unknown platform fails as bad input and says which platforms exist."""
    served = _platforms(None, tmp_path)
    mars = PlatformRequest(dataclasses.replace(REQUEST.spec, platform="mars"))
    with pytest.raises(InvalidRequestError, match=r"'mars'.*aws, hosts, kubernetes, local"):
        served.platform_for(mars)
    with pytest.raises(InvalidRequestError, match=r"'mars'"):
        served.observer("mars")


def test_a_registered_builder_is_used(stack_driver: StackDriver, tmp_path: Path) -> None:
    """Adding a platform is one builder; the factory hands it the request unchanged."""
    seen: list[object] = []
    local = BUILDERS["local"]

    def build(request: PlatformRequest, context: PlatformContext) -> Platform:
        seen.append(request)
        return local.platform(REQUEST, context)

    def observe(context: PlatformContext, period_s: int) -> FleetObserver:
        return local.observer(context, period_s)

    served = Platforms(PlatformContext(stack_driver, tmp_path),
                       {**BUILDERS, "test-cloud": PlatformBuilder(build, observe, Capabilities())})
    request = PlatformRequest(dataclasses.replace(REQUEST.spec, platform="test-cloud"))
    assert isinstance(served.platform_for(request), LocalPlatform)
    assert seen == [request]
    assert "test-cloud" in served.names and "test-cloud" not in BUILDERS


def test_a_worker_without_a_cluster_builds_every_observer(tmp_path: Path) -> None:
    """Every fleet watcher builds an observer of every platform: without
    SHADOWSHIFT_KUBECONFIG the kubernetes one is built and answers an empty fleet; only a
    protection on Kubernetes makes it ask for the cluster, as an error the watcher reports
    per platform (not one that stops it watching the others)."""
    served = _platforms(None, tmp_path)
    observers = {name: served.observer(name) for name in served.names}
    assert set(observers) == {"aws", "hosts", "kubernetes", "local"}
    assert observers["kubernetes"].locate({}) == {}
    spec = ProtectionSpec(
        "orders-db", "kubernetes", tier=1, primary_port=5432, shadow_port=5432,
        router_port=6432, kubernetes=KubernetesSection("databases", "orders-db-0", "fast"))
    with pytest.raises(InfraError, match="SHADOWSHIFT_KUBECONFIG"):
        observers["kubernetes"].locate({"orders-db": PlatformRequest(spec)})
    with pytest.raises(InvalidRequestError, match="SHADOWSHIFT_KUBECONFIG"):
        served.platform_for(PlatformRequest(spec))
