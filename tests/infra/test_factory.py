"""The platform factory: one dispatch on the request's ``platform`` field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from activities.shadow import ShadowRequest
from infra.errors import InvalidRequestError
from infra.factory import BUILDERS, platform_for
from infra.local.platform import LocalPlatform
from infra.platform import Platform
from infra.pulumi_engine import StackDriver

REQUEST = ShadowRequest("orders-db", 15432, 15433, 15434, tier=1)


def test_local_request_builds_the_local_platform(stack_driver: StackDriver, tmp_path: Path) -> None:
    """A request without a platform is local, with its ports and tier carried into the spec."""
    platform = platform_for(REQUEST, stack_driver, tmp_path)
    assert isinstance(platform, LocalPlatform)
    assert platform.nodes() == ("orders-db", "orders-db-shadow")
    assert (platform.spec.shadow_port, platform.spec.tier) == (15433, 1)
    assert platform.other_node("orders-db") == "orders-db-shadow"


def test_unknown_platform_is_refused_naming_the_known_ones(
    stack_driver: StackDriver, tmp_path: Path
) -> None:
    """An unknown platform fails as bad input and says which platforms exist."""
    with pytest.raises(InvalidRequestError, match=r"'mars'.*local"):
        platform_for(dataclasses.replace(REQUEST, platform="mars"), stack_driver, tmp_path)


def test_a_registered_builder_is_used(stack_driver: StackDriver, tmp_path: Path) -> None:
    """Registering a platform is one entry; the factory hands it the request unchanged."""
    seen: list[object] = []

    def build(request: object, driver: StackDriver, state_dir: Path) -> Platform:
        seen.append(request)
        return platform_for(dataclasses.replace(REQUEST), driver, state_dir)

    BUILDERS["test-cloud"] = build
    try:
        request = dataclasses.replace(REQUEST, platform="test-cloud", platform_spec={"zone": "b"})
        assert isinstance(platform_for(request, stack_driver, tmp_path), LocalPlatform)
        assert seen == [request]
    finally:
        del BUILDERS["test-cloud"]
