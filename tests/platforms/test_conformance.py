"""The platform conformance suite: what every platform must guarantee (``docs/platforms.md``),
one set of behaviour tests run against each platform on real servers.

A new platform passes this suite before it is registered in ``infra.factory``. Each test
names the guarantee it checks; platform-specific details stay in ``tests/infra/<platform>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import psycopg
import pytest

from contracts.shadow import NodeFacts
from infra.errors import InfraError, InvalidRequestError
from infra.platform import ALIVE, Located
from tests.platforms.conftest import Pair

pytestmark = pytest.mark.integration


def _until(check: object, timeout_s: float = 15.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def test_nodes_are_named_once_and_roles_come_from_the_request(pair: Pair) -> None:
    """Two fixed node names, the original primary first; the other of each is the other."""
    primary, shadow = pair.nodes
    assert primary == pair.request.instance_id and primary != shadow
    assert pair.platform.other_node(primary) == shadow
    assert pair.platform.other_node(shadow) == primary


def test_the_router_serves_the_primary_only(pair: Pair) -> None:
    """After provisioning, the router has the service, the primary at 100, the shadow at 0."""
    primary, shadow = pair.nodes
    assert pair.platform.routes_service()
    assert pair.platform.get_weights() == {primary: 100, shadow: 0}


def test_probes_tell_the_primary_from_the_standby(pair: Pair) -> None:
    """The primary is writable and not in recovery; the shadow answers, in recovery, not
    writable; replication between them streams, synchronously in tier 1."""
    primary, shadow = pair.nodes
    first, second = pair.platform.probe(primary), pair.platform.probe(shadow)
    assert first.reachable and first.writable and first.in_recovery is False
    assert second.reachable and not second.writable and second.in_recovery is True
    status = pair.platform.replication_between(primary, shadow)
    assert (status.state, status.sync_state) == ("streaming", "sync")
    assert status.lag_bytes is not None and status.lag_bytes >= 0


def test_weights_are_absolute_and_bad_weights_change_nothing(pair: Pair) -> None:
    """Setting weights twice is setting them once; a weight outside 0..100 is refused before
    anything changes."""
    primary, shadow = pair.nodes
    pair.platform.set_weights({primary: 100, shadow: 0})
    pair.platform.set_weights({primary: 100, shadow: 0})
    assert pair.platform.get_weights() == {primary: 100, shadow: 0}
    with pytest.raises(InvalidRequestError):
        pair.platform.set_weights({primary: 0, shadow: 101})
    assert pair.platform.get_weights() == {primary: 100, shadow: 0}


def test_fence_is_idempotent_and_undone_by_unfence(pair: Pair) -> None:
    """A fenced node refuses writes and gets no traffic (fencing twice is fencing once);
    unfence and absolute weights give it back."""
    primary, shadow = pair.nodes
    pair.platform.fence(primary)
    pair.platform.fence(primary)
    fenced = pair.platform.probe(primary)
    assert fenced.reachable and not fenced.writable
    assert pair.platform.get_weights()[primary] == 0
    pair.platform.unfence(primary)
    pair.platform.set_weights({primary: 100, shadow: 0})
    assert pair.platform.probe(primary).writable
    assert pair.platform.get_weights() == {primary: 100, shadow: 0}


def test_a_planned_switch_loses_nothing_and_promotion_is_idempotent(pair: Pair) -> None:
    """The cutover's steps through the contract alone: fence the primary, wait until the shadow
    replayed its final position, promote (twice: a no-op on a primary), shift the weights; a
    write through the router lands on the new primary and every row written before the fence
    is there. Promoting the fenced former primary never makes it a second writable primary
    (the platform refuses or does nothing)."""
    primary, shadow = pair.nodes
    platform = pair.platform
    with psycopg.connect(_conninfo(pair, primary), autocommit=True) as conn:
        conn.execute("CREATE TABLE conformance (id int PRIMARY KEY)")
        conn.execute("INSERT INTO conformance SELECT generate_series(1, 300)")
    platform.prepare_cutover(primary)
    platform.fence(primary)
    position = platform.final_position(primary)
    _until(lambda: platform.replay_gap(shadow, position) <= 0)
    platform.promote(shadow)
    platform.promote(shadow)
    platform.set_weights({primary: 0, shadow: 100})
    platform.close_router_sessions(primary)
    assert platform.probe(shadow).writable and not platform.probe(primary).writable
    assert platform.write_through_router("conformance-check") == shadow
    with psycopg.connect(_conninfo(pair, shadow), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM conformance").fetchone() == (300,)
    with contextlib.suppress(InvalidRequestError, InfraError):  # refusing is fine too
        platform.promote(primary)
    assert not platform.probe(primary).writable


def test_the_router_fence_needs_nothing_from_the_node(pair: Pair) -> None:
    """fence_router takes a node out of the router without asking it (so it works on a dead
    one); set_weights gives it back."""
    primary, shadow = pair.nodes
    pair.platform.fence_router(shadow)
    assert pair.platform.get_weights()[shadow] == 0
    pair.platform.fence_router(primary)
    assert pair.platform.get_weights() == {primary: 0, shadow: 0}
    pair.platform.set_weights({primary: 100, shadow: 0})
    assert pair.platform.get_weights() == {primary: 100, shadow: 0}


def test_inspect_never_raises_and_capabilities_are_honest(pair: Pair) -> None:
    """inspect_node answers for each node; what the platform says it cannot do, it refuses
    with the reason (a rejoin it does not offer: ``InvalidRequestError``; a sync relax it does
    not offer: ``NotImplementedError``)."""
    primary, shadow = pair.nodes
    for node in (primary, shadow):
        facts = pair.platform.inspect_node(node)
        assert isinstance(facts, NodeFacts) and facts.node == node
    caps = pair.platform.capabilities
    if not caps.rejoin:
        assert pair.platform.inspect_node(primary).rewindable is False
        with pytest.raises(InvalidRequestError):
            pair.platform.rejoin(primary)
    if not caps.sync_relax:
        with pytest.raises(NotImplementedError):
            pair.platform.relaxed_by_supervisor()
    else:
        assert pair.platform.relaxed_by_supervisor() is False
    address = pair.platform.probe_address(primary)
    assert address is None or (isinstance(address[0], str) and 0 < address[1] < 65536)


def test_the_observer_follows_the_serving_node(pair: Pair) -> None:
    """The fleet observer locates the primary, says it is alive and the shadow is ready, and
    reads a sample of it; once traffic moved, it locates the other node with another
    identity (a fresh metric window)."""
    primary, shadow = pair.nodes
    observer, instances = pair.observer, {pair.request.instance_id: pair.request}
    before = observer.locate(instances)[pair.request.instance_id]
    assert before.node == primary
    seen = observer.liveness(pair.request, before)
    assert seen is not None and seen.state == ALIVE
    assert observer.standby_ready(pair.request, before)
    pair.put_metrics(0.3)
    readings: dict[str, object] = {}

    def sampled() -> bool:
        readings.update(observer.sample(instances, {pair.request.instance_id: before},
                                        time.time()))
        return bool(readings)

    _until(sampled, 30)
    reading = readings[pair.request.instance_id]
    assert getattr(reading, "located", None) == before
    assert observer.scheduled_events({pair.request.instance_id: before}) is not None
    _switch(pair)
    after: Located = observer.locate(instances)[pair.request.instance_id]
    assert after.node == shadow and after.identity != before.identity


def test_a_request_with_other_roles_describes_the_other_standby(pair: Pair) -> None:
    """Roles come from the request: built for ``serving_node`` = the shadow, the platform's
    replication status is about the former primary as the standby (the stack follows)."""
    primary, shadow = pair.nodes
    _switch(pair)
    swapped = pair.served.platform_for(dataclasses.replace(pair.request, serving_node=shadow))
    assert swapped.other_node(shadow) == primary
    status = swapped.replication_status()
    assert status.state in ("stopped", "streaming", "unknown", "catchup")


def test_destroy_removes_the_standby_side(pair: Pair) -> None:
    """destroy_shadow removes the standby side and the router entry, never the serving node;
    a second destroy finds nothing."""
    if not pair.supports_lifecycle:
        pytest.skip(f"{pair.name}: provisioning and destroying need the {pair.name} provider "
                    "plugin, which cannot be built here (DESIGN.md §3); the program is tested "
                    "with Pulumi's mocks in tests/infra/aws/test_program.py")
    primary, shadow = pair.nodes
    pair.run_agent_tasks(pair.platform.host_tasks("destroy", shadow))
    assert pair.platform.destroy_shadow() is True
    assert pair.platform.probe(primary).writable
    assert not pair.platform.probe(shadow).reachable
    assert shadow not in pair.platform.get_weights()
    assert pair.platform.destroy_shadow() is False


def _switch(pair: Pair) -> None:
    primary, shadow = pair.nodes
    pair.platform.fence(primary)
    position = pair.platform.final_position(primary)
    _until(lambda: pair.platform.replay_gap(shadow, position) <= 0)
    pair.platform.promote(shadow)
    pair.platform.set_weights({primary: 0, shadow: 100})


def _conninfo(pair: Pair, node: str) -> str:
    """The node's real PostgreSQL, reached directly."""
    host, port = pair.endpoints[node]
    return f"host={host} port={port} user=postgres dbname=postgres"
