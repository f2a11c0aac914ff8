"""The managed HAProxy's runtime API with hostile names, on a real HAProxy: a name carrying
a line break (or a ``;`` in a batch) cannot smuggle a second runtime command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.errors import InvalidRequestError
from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.ports import free_ports

pytestmark = pytest.mark.integration

SERVICE = "db-hostile"


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[HAProxyManager]:
    """A real HAProxy with one service whose only server (weight 100) is a closed port."""
    router_port, server_port = free_ports(2)
    manager = HAProxyManager(tmp_path / "haproxy")
    manager.ensure_service(SERVICE, router_port,
                           [ServerEntry(SERVICE, "127.0.0.1", server_port)])
    try:
        yield manager
    finally:
        manager.stop()


@pytest.mark.parametrize("server_name", [
    f"x\nset server be_{SERVICE}/{SERVICE} weight 0",
    f"x\rset server be_{SERVICE}/{SERVICE} weight 0",
    f"x\0set server be_{SERVICE}/{SERVICE} weight 0",
])
def test_a_name_with_a_line_break_cannot_smuggle_a_command(haproxy: HAProxyManager,
                                                           server_name: str) -> None:
    """The socket reads one command per line: a server name ending a line and starting
    ``set server ... weight 0`` would have drained the real server. It is refused before
    anything is sent, and the weights are as they were."""
    with pytest.raises(InvalidRequestError, match="one line"):
        haproxy.set_weight(SERVICE, server_name, 5)
    with pytest.raises(InvalidRequestError, match="one line"):
        haproxy.set_enabled(SERVICE, server_name, False)
    assert haproxy.weights(SERVICE) == {SERVICE: 100}


def test_several_commands_still_refuse_a_semicolon(haproxy: HAProxyManager) -> None:
    """``commands`` joins lines with ``;``: a line holding one is refused, nothing sent."""
    with pytest.raises(InvalidRequestError, match="';'"):
        haproxy.commands([haproxy.weight_command(SERVICE, f"x; set server be_{SERVICE}/"
                                                          f"{SERVICE} weight 0", 1)])
    assert haproxy.weights(SERVICE) == {SERVICE: 100}
