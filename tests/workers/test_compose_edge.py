"""The compose edge HAProxy publishes the router_port it is told, by default the docs' spec's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "deploy/haproxy/haproxy.cfg"


def _haproxy_check(port: str | None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(binary).exists(), "haproxy is missing: run `make setup` (setup-system.sh)"
    env = {k: v for k, v in os.environ.items() if k != "EDGE_ROUTER_PORT"}
    if port is not None:
        env["EDGE_ROUTER_PORT"] = port
    return subprocess.run([binary, "-c", "-f", str(CONFIG)], env=env, capture_output=True,
                          text=True, timeout=30, check=False)


def test_edge_forwards_to_the_configured_router_port() -> None:
    """``haproxy -c`` accepts the config with the default and with a chosen port and refuses
    a port that is not one; compose's default is the router_port of docs/cli.md's spec."""
    accepted = _haproxy_check(None)
    assert accepted.returncode == 0, accepted.stderr
    assert _haproxy_check("7000").returncode == 0
    assert _haproxy_check("not-a-port").returncode != 0
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    default = compose["services"]["haproxy"]["environment"]["EDGE_ROUTER_PORT"]
    readme = (REPO_ROOT / "docs" / "cli.md").read_text()
    example = re.search(r"^router_port: (\d+)", readme, re.MULTILINE)
    assert example is not None
    assert default == f"${{EDGE_ROUTER_PORT:-{example.group(1)}}}"
    assert f"${{EDGE_ROUTER_PORT-{example.group(1)}}}" in CONFIG.read_text()
