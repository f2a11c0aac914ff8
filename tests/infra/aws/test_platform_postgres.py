"""AwsPlatform with PostgreSQL on its (moto) instances: the cutover's steps on real data.

The instances are moto EC2 instances whose ``shadowshift:endpoint`` tags point at a real local
primary and its synchronous standby; ALB and Route 53 weights, tags and instance state go
through moto.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg
import pytest

from contracts.shadow import PlatformRequest
from contracts.spec import SpecError, spec_from_dict
from infra.aws.clients import AwsClients
from infra.aws.factory import build_aws_platform
from infra.aws.platform import AwsPlatform
from infra.aws.spec_loader import load_spec
from infra.errors import InfraError, InvalidRequestError
from infra.platform import PlatformContext
from infra.pulumi_engine import StackDriver
from tests.conftest import LocalService
from tests.infra.aws.conftest import upsert_record
from tests.infra.aws.pg_world import PgWorld, alb_weights, build_pg_world, dns_weights
from tests.workflows.test_cutover import protect
from workers.settings import Settings


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """boto3's own variables point the platform's clients at moto."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    return moto_url


def _aws_platform(world: PgWorld, driver: StackDriver, **spec: object) -> AwsPlatform:
    context = PlatformContext(driver, Path("/nonexistent"))  # AWS keeps no files
    return build_aws_platform(world.request(1, **spec), context)


def _sync_names(service: LocalService, expected: str) -> str:
    """The primary's setting once it shows ``expected`` (a reload lands asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        with service.primary.endpoint.connect() as conn:
            row = conn.execute("SHOW synchronous_standby_names").fetchone()
        value = str(row[0]) if row else ""
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


async def test_planned_steps_move_real_data_and_weights(
    aws_env: str, clients: AwsClients, settings: Settings, local_service: LocalService,
    stack_driver: StackDriver,
) -> None:
    """Tier-1 sync relaxed and restored; fence, catch up, promote, shift on the AWS platform:
    the fenced primary refuses writes,
    the shadow holds every committed row and takes writes, moto holds the new weights, and the
    verify refuses a DNS record that points at another address."""
    await protect(local_service, settings, tier=1)
    request = local_service.request
    world = build_pg_world(clients, request.instance_id, request.spec.primary_port,
                           request.spec.shadow_port)
    platform = _aws_platform(world, stack_driver)
    primary, shadow = world.nodes
    assert platform.routes_service() and platform.nodes() == (primary, shadow)
    assert platform.probe(primary).writable
    standby = platform.probe(shadow)
    assert standby.reachable and standby.in_recovery and not standby.writable
    status = platform.replication_between(primary, shadow)
    assert (status.state, status.sync_state) == ("streaming", "sync")
    platform.relax_sync()  # tier 1 degrade and back, on the node labelled primary
    assert _sync_names(local_service, "") == ""
    platform.restore_sync()
    names = f'FIRST 1 ("{shadow}")'
    assert _sync_names(local_service, names) == names

    with local_service.primary.endpoint.connect() as conn:
        conn.execute("CREATE TABLE aws_rows (id int PRIMARY KEY)")
        conn.execute("INSERT INTO aws_rows SELECT generate_series(1, 500)")
    platform.fence(primary)
    platform.fence(primary)  # idempotent
    fenced = platform.probe(primary)
    assert fenced.reachable and not fenced.writable and fenced.detail == "read-only"
    with (
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
        local_service.primary.endpoint.connect() as conn,
    ):
        conn.execute("INSERT INTO aws_rows VALUES (501)")
    assert alb_weights(clients, world)[primary] == 0 and dns_weights(clients, world)[primary] == 0

    position = platform.final_position(primary)
    deadline = time.monotonic() + 10
    while platform.replay_gap(shadow, position) > 0:
        assert time.monotonic() < deadline, "the shadow never replayed the final position"
        time.sleep(0.01)
    platform.promote(shadow)
    platform.promote(shadow)  # a no-op on a primary
    platform.set_weights({primary: 0, shadow: 100})
    assert alb_weights(clients, world) == {primary: 0, shadow: 100}
    assert dns_weights(clients, world) == {primary: 0, shadow: 100}
    assert platform.probe(shadow).writable and not platform.probe(primary).writable
    assert platform.write_through_router("check-1") == shadow
    with local_service.shadow.connect() as conn:
        assert conn.execute("SELECT count(*) FROM aws_rows").fetchone() == (500,)
    with pytest.raises(InvalidRequestError, match="fenced"):
        platform.promote(primary)

    upsert_record(clients, world.zone_id, shadow, "10.0.2.250", 100)
    with pytest.raises(InfraError, match=re.escape("10.0.2.250")):
        platform.write_through_router("check-2")
    platform.close()


def test_bad_aws_requests_are_refused_by_name(
    aws_env: str, clients: AwsClients, stack_driver: StackDriver
) -> None:
    """A tier inside the aws section, a misspelt field, a bad postgres port, and a cutover step
    without a postgres section each fail with the field to fix, before any AWS call changes
    anything: the spec's validation names the field, and the platform refuses a bad value of a
    spec that skipped it."""
    world = build_pg_world(clients, "orders-db", 5432, 5433)
    primary, shadow = world.nodes
    bad = {
        "aws.tier: unknown field": {"tier": 3},
        "aws.alb.listner_arn: unknown field": {"alb": {"listner_arn": world.listener_arn}},
        "aws.postgres.port": {"postgres": {"port": 70000}},
    }
    for message, override in bad.items():
        with pytest.raises(SpecError, match=message):
            _aws_platform(world, stack_driver, **override)
    unchecked = PlatformRequest(spec_from_dict({
        "instance_id": "orders-db", "platform": "aws", "tier": 1,
        "aws": world.platform_spec(postgres={"port": 70000})}, strict=False))
    with pytest.raises(InvalidRequestError, match=r"postgres\.port"):
        build_aws_platform(unchecked, PlatformContext(stack_driver, Path("/nonexistent")))
    without = _aws_platform(world, stack_driver, postgres=None)
    with pytest.raises(InvalidRequestError, match="postgres"):
        without.replication_between(primary, shadow)
    assert alb_weights(clients, world) == {primary: 100, shadow: 0}
    loaded = load_spec({**world.platform_spec(), "instance_id": "orders-db", "tier": 2})
    assert loaded.postgres is not None and loaded.postgres.port == 5432
