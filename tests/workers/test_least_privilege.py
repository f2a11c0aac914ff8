"""What a ShadowShift process exposes on the network: the Prometheus endpoints (ours and the
Temporal SDK's) and the demo's dev server with its Web UI listen on loopback unless an
operator configures another address."""

from __future__ import annotations

import dataclasses
import ipaddress
import os

import psutil
import pytest

from infra.local.ports import free_ports
from workers.demo_services import dev_server
from workers.settings import Settings, SettingsError, load_settings
from workers.telemetry import start_telemetry


def _listening(pid: int, ports: set[int] | None = None) -> dict[int, set[str]]:
    """Port → addresses that process ``pid`` listens on (TCP), optionally only ``ports``."""
    found: dict[int, set[str]] = {}
    for connection in psutil.Process(pid).net_connections(kind="tcp"):
        if connection.status != psutil.CONN_LISTEN:
            continue
        if ports is None or connection.laddr.port in ports:
            found.setdefault(connection.laddr.port, set()).add(connection.laddr.ip)
    return found


@pytest.mark.parametrize(("configured", "expected"), [({}, "127.0.0.1"),
                                                      ({"metrics_host": "0.0.0.0"}, "0.0.0.0")])
def test_metrics_endpoints_listen_on_loopback_unless_configured(
    settings: Settings, configured: dict[str, str], expected: str,
) -> None:
    """With both ports set and nothing else, ShadowShift's and the SDK's endpoints listen
    on 127.0.0.1 only; ``SHADOWSHIFT_METRICS_HOST`` moves both."""
    ours, sdk = free_ports(2)
    telemetry = start_telemetry(dataclasses.replace(settings, prometheus_port=ours,
                                                    temporal_metrics_port=sdk, **configured))
    try:
        listening = _listening(os.getpid(), {ours, sdk})
        assert listening.get(ours) == {expected}
        # The SDK's endpoint starts with the runtime, in the same process.
        assert telemetry.runtime is not None
        assert listening.get(sdk) == {expected}
    finally:
        telemetry.shutdown()


def test_the_metrics_host_must_be_an_address() -> None:
    """A host name or garbage is refused naming the variable (the endpoints bind to it)."""
    with pytest.raises(SettingsError, match="SHADOWSHIFT_METRICS_HOST"):
        load_settings({"SHADOWSHIFT_METRICS_HOST": "everywhere"}, worker=False)
    assert load_settings({}, worker=False).metrics_host == "127.0.0.1"


@pytest.mark.integration
async def test_the_demo_dev_server_and_its_web_ui_listen_on_loopback() -> None:
    """The dev server the demo starts (frontend, Web UI, metrics) binds no port beyond
    loopback: the UI shows every protection to whoever reaches it."""
    async with dev_server() as server:
        temporal = [child for child in psutil.Process().children(recursive=True)
                    if child.name().startswith("temporal")]
        assert temporal, "no temporal process found"
        addresses = {ip for child in temporal
                     for ips in _listening(child.pid).values() for ip in ips}
        ui_port = int(server.ui_url.rsplit(":", 1)[1])
        assert any(ui_port in _listening(child.pid) for child in temporal)
    assert addresses and all(ipaddress.ip_address(ip).is_loopback for ip in addresses), \
        addresses
