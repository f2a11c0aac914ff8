"""Bad requests to provision_shadow fail once, clearly, and leave nothing behind."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.shadow import PlatformShadowActivities
from contracts.shadow import PlatformRequest
from infra.local.ports import port_free
from infra.local.postgres import PgServer, query_one
from infra.pulumi_engine import StackDriver
from tests.conftest import LocalService, with_spec
from workers.registry import platforms, pulumi_config
from workers.settings import Settings


@pytest.fixture
def activities(settings: Settings) -> PlatformShadowActivities:
    return PlatformShadowActivities(platforms(settings))


def _refused(activities: PlatformShadowActivities, request: PlatformRequest) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(activities.provision_shadow, request)
    assert caught.value.non_retryable and caught.value.type == "InvalidRequest"
    return caught.value


def _assert_nothing_left(settings: Settings, request: PlatformRequest) -> None:
    home = settings.state_dir / "instances" / request.instance_id / "shadow"
    assert not (home / "data").exists() and not (home / "data.partial").exists()
    assert not StackDriver(pulumi_config(settings)).exists(f"shadow-{request.instance_id}")
    assert not PgServer(home=home, port=request.spec.shadow_port).running()


@pytest.mark.parametrize("instance_id", ["../etc", "db/1", "DB1", "-db", "a b", "x" * 60])
def test_unsafe_instance_ids(
    activities: PlatformShadowActivities, local_service: LocalService, instance_id: str
) -> None:
    """Ids that could escape a path or a stack name are refused before anything runs."""
    request = with_spec(local_service.request, instance_id=instance_id)
    assert "invalid instance id" in str(_refused(activities, request))


def test_unreachable_primary(
    activities: PlatformShadowActivities, local_service: LocalService, settings: Settings
) -> None:
    """A primary nobody listens for is named with its address."""
    local_service.primary.stop()
    error = _refused(activities, local_service.request)
    assert "unreachable" in str(error)
    _assert_nothing_left(settings, local_service.request)


def test_role_without_replication(
    activities: PlatformShadowActivities, local_service: LocalService, settings: Settings
) -> None:
    """A replication role lacking REPLICATION gets the statement that fixes it."""
    with local_service.primary.endpoint.connect() as conn:
        conn.execute("CREATE ROLE plain_user LOGIN")
    request = with_spec(local_service.request, replication_user="plain_user")
    assert "ALTER ROLE plain_user REPLICATION" in str(_refused(activities, request))
    _assert_nothing_left(settings, request)


def test_shadow_port_in_use(
    activities: PlatformShadowActivities, local_service: LocalService, settings: Settings
) -> None:
    """A shadow port somebody else listens on is refused (no standby is started there)."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", local_service.request.spec.shadow_port))
        squatter.listen()
        error = _refused(activities, local_service.request)
    assert "already in use" in str(error)
    _assert_nothing_left(settings, local_service.request)


@pytest.fixture
def small_disk(settings: Settings, local_service: LocalService) -> Iterator[Path]:
    """The shadow's folder on an 8 MiB tmpfs (root only)."""
    target = settings.state_dir / "instances" / local_service.request.instance_id
    target.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=755", "tmpfs",
                              str(target)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_full_disk(
    activities: PlatformShadowActivities, local_service: LocalService, settings: Settings,
    small_disk: Path,
) -> None:
    """A disk too small for the copy is refused with the sizes, before copying anything."""
    error = _refused(activities, local_service.request)
    assert "not enough disk" in str(error) and "MiB free" in str(error)
    _assert_nothing_left(settings, local_service.request)
    assert port_free(local_service.request.spec.shadow_port)
    slots = query_one(local_service.primary.endpoint, "SELECT count(*) FROM pg_replication_slots")
    assert slots == 0
