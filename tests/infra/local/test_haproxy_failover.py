"""The router's side of a failover: a client that reaches a dead server is not left hanging."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.ports import free_port


@pytest.fixture
def greeter() -> Iterator[int]:
    """A TCP server on a free port that greets every connection with ``hi``."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"hi")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _greeting(port: int) -> tuple[bytes, float]:
    """Connect through the router; what the server said (b"" if closed) and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(2), time.monotonic() - started


def test_a_dead_primary_fails_clients_fast_and_leaves_the_rotation(
    tmp_path: Path, greeter: int
) -> None:
    """A client routed to a killed primary (nothing listens) gets its connection closed at once
    and the router marks that server down on the spot, so the client's own retry reaches the
    new primary as soon as the weights move. With HAProxy's defaults (1 s between connect
    retries, no observation of live traffic) the same client hung for 3 s."""
    haproxy = HAProxyManager(tmp_path / "haproxy")
    port = free_port()
    haproxy.ensure_service("svc", port, [ServerEntry("old", "127.0.0.1", free_port())])
    try:
        haproxy.add_server("svc", ServerEntry("new", "127.0.0.1", greeter))
        # As just after the kill: checks have not noticed yet, only live traffic can.
        haproxy.commands(["disable health be_svc/old", "set server be_svc/old health up"])
        assert not haproxy.stats("svc")["old"].status.startswith("DOWN")

        said, waited = _greeting(port)
        assert said == b"" and waited < 0.5, f"client got {said!r} after {waited:.2f}s"
        assert haproxy.stats("svc")["old"].status.startswith("DOWN")

        haproxy.commands([haproxy.weight_command("svc", "old", 0),
                          haproxy.weight_command("svc", "new", 100)])
        assert _greeting(port)[0] == b"hi"
    finally:
        haproxy.stop()
