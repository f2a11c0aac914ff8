"""Helpers for the ``shadowshift`` CLI tests: run the real program, write specs, read history
with the ``temporal`` CLI (independently of the code under test)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import LocalService, temporal_binary

REPO = Path(__file__).resolve().parents[2]


async def shadowshift(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m workers.cli ARGS`` as a subprocess that leaves the event loop free for the
    in-process worker."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    return subprocess.CompletedProcess(list(args), process.returncode or 0, out.decode(),
                                       err.decode())


def write_spec(path: Path, service: LocalService, *, tier: int = 2, threshold: float = 60) -> Path:
    """A protection spec for ``service`` as an operator would write it."""
    request = service.request
    path.write_text(
        f"# protection of the test's primary\n"
        f"instance_id: {request.instance_id}\n"
        f"platform: local\n"
        f"tier: {tier}\n"
        f"primary_port: {request.spec.primary_port}\n"
        f"shadow_port: {request.spec.shadow_port}\n"
        f"router_port: {request.spec.router_port}\n"
        f"policy:\n"
        f"  threshold: {threshold}\n"
        f"  advisory: true\n"
    )
    return path


async def temporal_history(
    address: str, workflow_id: str, run_id: str = ""
) -> list[dict[str, Any]]:
    """The workflow's events as ``temporal workflow show --output json`` prints them."""
    args = ["workflow", "show", "--workflow-id", workflow_id, "--output", "json",
            "--address", address]
    if run_id:
        args += ["--run-id", run_id]
    process = await asyncio.create_subprocess_exec(
        temporal_binary(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    events: list[dict[str, Any]] = json.loads(out)["events"]
    return events


def payload_value(payload: dict[str, Any]) -> Any:
    """A JSON payload's value, whether the CLI printed it decoded or base64-encoded."""
    if "data" in payload and isinstance(payload["data"], str):
        return json.loads(base64.b64decode(payload["data"]))
    return payload
