"""The managed HAProxy: weights through the runtime API, run-time servers that survive reloads."""

from __future__ import annotations

import stat

import pytest

from infra.errors import InvalidRequestError
from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.postgres import PgEndpoint, query_one
from tests.conftest import LocalService


def _port_behind_router(service: LocalService) -> int:
    return int(query_one(PgEndpoint(port=service.request.spec.router_port), "SHOW port"))


def test_weights_route_new_connections(local_service: LocalService) -> None:
    """A run-time server joins at weight 0; absolute weights decide where clients land."""
    haproxy, request = local_service.haproxy, local_service.request
    name = request.instance_id
    assert stat.S_IMODE(haproxy.socket_path.stat().st_mode) == 0o600
    assert _port_behind_router(local_service) == request.spec.primary_port

    # A second real PostgreSQL to route to: the primary itself under another server name
    # would prove nothing, so route to a scratch server on the shadow port.
    from infra.local.postgres import PgServer

    other = PgServer(home=haproxy.directory.parent / "other", port=request.spec.shadow_port)
    other.init()
    other.start()
    try:
        haproxy.add_server(name, ServerEntry("other", "127.0.0.1", request.spec.shadow_port))
        assert haproxy.weights(name) == {name: 100, "other": 0}
        assert _port_behind_router(local_service) == request.spec.primary_port

        haproxy.set_weight(name, name, 0)
        haproxy.set_weight(name, "other", 100)
        assert _port_behind_router(local_service) == request.spec.shadow_port
        haproxy.set_weight(name, "other", 100)  # absolute: repeating changes nothing
        assert haproxy.weights(name) == {name: 0, "other": 100}
        stats = haproxy.stats(name)["other"]
        assert stats.total_sessions >= 1 and stats.status.startswith("UP")

        # A reload (needed for new services) keeps run-time servers and their weights.
        haproxy.reload()
        assert haproxy.weights(name) == {name: 0, "other": 100}
        assert _port_behind_router(local_service) == request.spec.shadow_port

        haproxy.add_server(name, ServerEntry("other", "127.0.0.1", request.spec.shadow_port))
        assert haproxy.weights(name)["other"] == 100  # re-adding keeps the current weight

        haproxy.remove_server(name, "other")
        assert haproxy.server_names(name) == [name]
        haproxy.remove_server(name, "other")  # idempotent
    finally:
        other.stop(mode="immediate")


def test_bad_requests(local_service: LocalService) -> None:
    """Out-of-range weights, unknown services and taken ports are refused."""
    haproxy, request = local_service.haproxy, local_service.request
    with pytest.raises(InvalidRequestError):
        haproxy.set_weight(request.instance_id, request.instance_id, 300)
    with pytest.raises(InvalidRequestError):
        haproxy.add_server("nope", ServerEntry("x", "127.0.0.1", 1))
    with pytest.raises(InvalidRequestError, match="already"):
        haproxy.ensure_service("second", request.spec.router_port, [])
    with pytest.raises(InvalidRequestError, match="in use"):
        haproxy.ensure_service("third", request.spec.primary_port, [])


def test_restart_from_topology(local_service: LocalService) -> None:
    """After a stop, start brings the declared services back from topology.json."""
    haproxy = local_service.haproxy
    haproxy.stop()
    assert not haproxy.running()
    restarted = HAProxyManager(haproxy.directory)
    restarted.start()
    assert local_service.request.instance_id in restarted.services()
    restarted.set_weight(local_service.request.instance_id, local_service.request.instance_id, 100)
    assert _port_behind_router(local_service) == local_service.request.spec.primary_port
