"""Payload encryption on a real Temporal dev server: a planted secret never appears in a
workflow's history in clear, and the real ``temporal`` CLI shows it only through our codec
server (started as ``shadowshift codec-server``, with and without a bearer token)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import http.client
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from contracts.spec import ProtectionSpec
from tests.conftest import temporal_binary, worker_env
from workers.payload_codec import converter_for
from workers.payload_keys import new_entry, parse_keys
from workers.registry import new_worker
from workers.settings import REPO_ROOT, Settings
from workflows.protection import InstanceProtectionWorkflow

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Planted:
    """A failed protection whose input, memo, summary and failure all carry ``marker``."""

    address: str
    """The dev server's frontend."""
    workflow_id: str
    """The protection's workflow id."""
    marker: str
    """The secret planted in it."""
    key_file: Path
    """The key file it was encrypted with (mode 0600)."""


@pytest.fixture
async def planted(temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
                  tmp_path: Path) -> Planted:
    """Start a protection through an encrypting client and worker with a spec whose
    replication user holds the marker (invalid, so the workflow's first step fails naming
    it: the failure message carries the marker too)."""
    key_file = tmp_path / "payload-keys"
    key_file.write_text(new_entry("k-test") + "\n")
    key_file.chmod(0o600)
    ring = parse_keys(key_file.read_text(), str(key_file))
    address = temporal_env.client.service_client.config.target_host
    client = await Client.connect(address, data_converter=converter_for(ring))
    marker = f"pw-{uuid.uuid4().hex}"
    instance_id = f"enc-{uuid.uuid4().hex[:8]}"
    spec = ProtectionSpec(instance_id=instance_id, primary_port=21001, shadow_port=21002,
                          router_port=21003, replication_user=f"role {marker}")
    workflow_id = f"protect-{instance_id}"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with new_worker(client, settings, pool, task_queue=task_queue,
                              with_activities=False):
            handle = await client.start_workflow(
                InstanceProtectionWorkflow.run, spec, id=workflow_id, task_queue=task_queue,
                memo={"note": f"memo {marker}"}, static_summary=f"summary {marker}")
            with pytest.raises(WorkflowFailureError) as failed:
                await asyncio.wait_for(handle.result(), 60)
    assert marker in str(failed.value.cause)  # our own client decrypts the failure
    return Planted(address, workflow_id, marker, key_file)


async def _temporal(*args: str) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        temporal_binary(), *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return subprocess.CompletedProcess(args, process.returncode or 0, out.decode(),
                                       err.decode())


def _show(planted: Planted, *codec: str) -> list[str]:
    return ["workflow", "show", "--workflow-id", planted.workflow_id, "--output", "json",
            "--address", planted.address, *codec]


def _everything_readable(text: str) -> str:
    """``text`` plus the base64 ``data`` fields in it decoded, where a lazy reader would
    look for a secret the CLI did not print as JSON."""
    decoded = []
    for field in re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', text):
        decoded.append(base64.b64decode(field).decode("latin-1"))
    return "\n".join([text, *decoded])


def _post_status(url: str, path: str, authorization: str) -> int:
    """The status of a POST of no payloads to the codec server."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    connection.request("POST", path, body=b'{"payloads": []}', headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


@dataclass
class RunningCodecServer:
    """A ``shadowshift codec-server`` subprocess."""

    url: str
    process: asyncio.subprocess.Process


@pytest.fixture
async def codec_server_factory(
) -> AsyncIterator[list[RunningCodecServer]]:
    """Starts ``shadowshift codec-server`` processes; stops them after the test."""
    started: list[RunningCodecServer] = []
    yield started
    for server in started:
        server.process.terminate()
        await server.process.wait()


async def _start_codec_server(started: list[RunningCodecServer], key_file: Path,
                              *args: str) -> RunningCodecServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
    env["SHADOWSHIFT_PAYLOAD_KEY_FILE"] = str(key_file)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", "codec-server", "--listen", "127.0.0.1:0", *args,
        cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
    match = re.search(r"Codec server on (http://\S+)", line)
    assert match, line
    server = RunningCodecServer(match[1], process)
    started.append(server)
    return server


async def test_the_history_holds_only_ciphertext_of_a_planted_secret(planted: Planted) -> None:
    """Read with the temporal CLI and no codec, the whole history (input, memo, summary,
    failure message) has no trace of the marker, not even in base64 data fields."""
    shown = await _temporal(*_show(planted))
    assert shown.returncode == 0, shown.stderr
    assert "binary/encrypted" in shown.stdout or "YmluYXJ5L2VuY3J5cHRlZA" in shown.stdout
    assert planted.marker not in _everything_readable(shown.stdout)
    described = await _temporal("workflow", "describe", "--workflow-id", planted.workflow_id,
                                "--output", "json", "--address", planted.address)
    assert described.returncode == 0, described.stderr
    assert planted.marker not in _everything_readable(described.stdout)


async def test_the_temporal_cli_decodes_through_the_codec_server(
    planted: Planted, codec_server_factory: list[RunningCodecServer],
) -> None:
    """``temporal workflow show --codec-endpoint`` pointed at ``shadowshift codec-server``
    shows the workflow's decoded input, and its failure message in the decoded encoded
    attributes."""
    server = await _start_codec_server(codec_server_factory, planted.key_file)
    shown = await _temporal(*_show(planted, "--codec-endpoint", server.url))
    assert shown.returncode == 0, shown.stderr
    events = json.loads(shown.stdout)["events"]
    started = events[0]["workflowExecutionStartedEventAttributes"]
    (payload,) = started["input"]["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    spec = json.loads(base64.b64decode(payload["data"]))
    assert spec["replication_user"] == f"role {planted.marker}"
    failure = events[-1]["workflowExecutionFailedEventAttributes"]["failure"]
    assert failure["message"] == "Encoded failure"  # the real one is in encoded attributes
    attributes = json.loads(base64.b64decode(failure["encodedAttributes"]["data"]))
    assert planted.marker in attributes["message"]


async def test_a_codec_server_with_a_token_refuses_callers_without_it(
    planted: Planted, codec_server_factory: list[RunningCodecServer], tmp_path: Path,
) -> None:
    """With ``--token-file``, the CLI decodes only when it sends ``--codec-auth 'Bearer
    <token>'``; without it the server answers 401 and nothing is decoded."""
    token_file = tmp_path / "codec-token"
    token_file.write_text("t0ken-" + uuid.uuid4().hex + "\n")
    token_file.chmod(0o600)
    token = token_file.read_text().strip()
    server = await _start_codec_server(codec_server_factory, planted.key_file,
                                       "--token-file", str(token_file))
    # The CLI retries a refused codec call until its deadline; 3 s is plenty to be refused.
    refused = await _temporal(*_show(planted, "--codec-endpoint", server.url,
                                     "--command-timeout", "3s"))
    assert refused.returncode != 0
    assert planted.marker not in _everything_readable(refused.stdout)
    assert await asyncio.to_thread(_post_status, server.url, "/decode", "") == 401
    assert await asyncio.to_thread(_post_status, server.url, "/decode", f"Bearer {token}") == 200
    allowed = await _temporal(*_show(planted, "--codec-endpoint", server.url,
                                     "--codec-auth", f"Bearer {token}"))
    assert allowed.returncode == 0, allowed.stderr
    assert planted.marker in _everything_readable(allowed.stdout)


async def test_the_codec_server_answers_cors_only_for_its_web_ui_origin(
    planted: Planted, codec_server_factory: list[RunningCodecServer],
) -> None:
    """A browser pre-flight from the configured Web UI origin is allowed with the headers
    the UI sends; another origin gets no CORS grant, so its page cannot read the answer."""
    ui = "http://localhost:8233"
    server = await _start_codec_server(codec_server_factory, planted.key_file,
                                       "--cors-origin", ui)
    host, port = server.url.removeprefix("http://").split(":")

    def preflight(origin: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("OPTIONS", "/decode", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    granted = await asyncio.to_thread(preflight, ui)
    assert granted.getheader("Access-Control-Allow-Origin") == ui
    assert "x-namespace" in (granted.getheader("Access-Control-Allow-Headers") or "").lower()
    other = await asyncio.to_thread(preflight, "https://evil.example")
    assert other.getheader("Access-Control-Allow-Origin") is None


def test_a_worker_with_an_unusable_key_file_exits_2_naming_it(settings: Settings,
                                                              tmp_path: Path) -> None:
    """A key file open to others stops ``python -m workers.main`` with one line naming the
    variable and the chmod, before it connects to anything."""
    key_file = tmp_path / "payload-keys"
    key_file.write_text(new_entry("k1") + "\n")
    key_file.chmod(0o644)
    done = subprocess.run(
        [sys.executable, "-m", "workers.main"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60, env=worker_env(settings, SHADOWSHIFT_PAYLOAD_KEY_FILE=str(key_file),
                                   SHADOWSHIFT_TEMPORAL_ADDRESS="127.0.0.1:1"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "SHADOWSHIFT_PAYLOAD_KEY_FILE" in done.stderr and "chmod 600" in done.stderr
