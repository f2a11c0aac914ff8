"""Secrets scan, end to end on the local platform: the replication password planted in the
passfile a protection's replication role uses appears nowhere after a protection, a cutover and
a recovery: not in any workflow history (raw, or decoded with the payload key), the worker's
logs, the state dir (Pulumi state and history, stacks, server logs), the spans and metrics it
exported, ``demo-out/`` or ``bench/results/``. Real PostgreSQL, HAProxy, Pulumi and Temporal.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import PayloadCodec
from temporalio.testing import WorkflowEnvironment

from contracts.policy import Policy
from contracts.protection import CutoverRequest, ProtectionStatus
from infra.local.postgres import alter_system
from infra.local.secure_replication import create_replication_role, require_tls_scram_replication
from infra.pg_security import STANDBY_PASSFILE
from tests.conftest import LocalService, with_spec
from tests.secret_scan import contains, scan_files, scan_texts
from workers.payload_codec import converter_for
from workers.payload_keys import new_entry, parse_keys
from workers.registry import new_worker
from workers.settings import REPO_ROOT, Settings
from workers.telemetry import start_telemetry
from workflows.protection import InstanceProtectionWorkflow

ROLE = "replicator"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything any logger says at DEBUG and above while the test runs."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_the_scanner_finds_a_planted_canary(tmp_path: Path) -> None:
    """Self-check: the scan below can fail. A canary in a file, base64 inside JSON, or in a
    log line is found and named; a skipped file is not."""
    canary = f"ss-canary-{uuid.uuid4().hex}"
    (tmp_path / "plain.log").write_text(f"connecting with password={canary}\n")
    encoded = base64.b64encode(json.dumps({"password": canary}).encode()).decode()
    (tmp_path / "state.json").write_text(json.dumps({"outputs": {"data": encoded}}))
    (tmp_path / "clean.txt").write_text("nothing here\n")
    (tmp_path / STANDBY_PASSFILE).write_text(f"*:*:replication:{ROLE}:{canary}\n")
    hits = scan_files(canary, [tmp_path], skip_names=[STANDBY_PASSFILE])
    assert hits == [f"file {tmp_path / 'plain.log'}", f"file {tmp_path / 'state.json'}"]
    assert scan_texts(canary, {"worker log": f"x {canary} y", "spans": "[]"}) == ["worker log"]


def _payloads(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``Payload`` (a dict with ``metadata`` and ``data``) in a history's JSON."""
    if isinstance(node, dict):
        if "data" in node and "metadata" in node:
            yield node
        for value in node.values():
            yield from _payloads(value)
    elif isinstance(node, list):
        for value in node:
            yield from _payloads(value)


async def _decoded(history: dict[str, Any], codec: PayloadCodec) -> bytes:
    """The history's payloads decrypted with the key: what an authorised operator sees."""
    payloads = [json_format.ParseDict(p, Payload()) for p in _payloads(history)]
    decoded = await codec.decode(payloads)
    return b"\n".join(p.SerializeToString() for p in decoded)


async def _histories(client: Client, task_queue: str, known: list[str]
                     ) -> dict[str, dict[str, Any]]:
    """Raw JSON of every workflow run on ``task_queue`` (and of the ``known`` ids)."""
    ids = set(known)
    async for execution in client.list_workflows(f'TaskQueue = "{task_queue}"'):
        ids.add(execution.id)
    return {workflow_id: (await client.get_workflow_handle(workflow_id).fetch_history())
            .to_json_dict() for workflow_id in sorted(ids)}


async def _until(check: Any, timeout_s: float, what: str) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                status = await check()
                if status is not None:
                    return status
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not {what} within {timeout_s:.0f} s") from None


async def test_the_replication_password_appears_nowhere(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, tmp_path: Path, captured_logs: io.StringIO,
) -> None:
    """Protect (TLS + SCRAM, password from a passfile), cut over, let the former primary
    rejoin; then no history, log, state file, span, metric or report holds the canary."""
    canary = f"ss-canary-{uuid.uuid4().hex}"
    primary = local_service.primary
    with primary.endpoint.connect() as conn:
        alter_system(conn, "wal_log_hints", "on")  # the recovery rewinds the former primary
    primary.stop()
    primary.start()
    create_replication_role(primary, ROLE, canary)
    require_tls_scram_replication(primary, ROLE)
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    passfile = secrets / "pgpass"
    passfile.write_text(f"127.0.0.1:*:replication:{ROLE}:{canary}\n")
    passfile.chmod(0o600)
    key_file = secrets / "payload-keys"
    key_file.write_text(new_entry("k-scan") + "\n")
    key_file.chmod(0o600)
    ring = parse_keys(key_file.read_text(), str(key_file))
    settings = dataclasses.replace(settings, pg_passfile=passfile, payload_key_file=key_file)

    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = start_telemetry(settings, span_processors=[SimpleSpanProcessor(spans)],
                                metric_readers=[metrics])
    converter = converter_for(ring)
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace, data_converter=converter,
        interceptors=[telemetry.interceptor()])
    spec = with_spec(local_service.request, tier=1, replication_user=ROLE,
                     policy=Policy(threshold=60, cooldown_s=0)).spec
    original = spec.instance_id
    try:
        with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
            async with new_worker(client, settings, pool, task_queue=task_queue):
                handle = await client.start_workflow(
                    InstanceProtectionWorkflow.run, spec, id=spec.workflow_id,
                    task_queue=task_queue)

                async def reached(check: Any) -> ProtectionStatus | None:
                    status = await handle.query(InstanceProtectionWorkflow.status)
                    return status if check(status) else None

                await _until(lambda: reached(lambda s: s.phase == "protected"), 180,
                             "protected")
                await handle.execute_update(InstanceProtectionWorkflow.request_cutover,
                                            CutoverRequest("secrets scan"))
                done = await _until(lambda: reached(
                    lambda s: s.recoveries == ["rejoined"] and s.phase == "protected"), 240,
                    "cut over and recovered")
                assert done.primary_node == f"{original}-shadow" and done.cutovers == 1
                await handle.terminate("secrets scan over")
        histories = await _histories(client, task_queue, [spec.workflow_id])
        collected = metrics.get_metrics_data()
    finally:
        telemetry.shutdown()

    # The password did its job: the former primary streams from the new one as the SCRAM
    # role over TLS (so the scan below is not vacuous).
    with local_service.shadow.connect() as conn:
        row = conn.execute(
            "SELECT r.usename, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
            " WHERE r.application_name = %s", (original,)).fetchone()
    assert row == (ROLE, True)
    assert len(histories) >= 2, list(histories)  # the protection and its cutover at least

    codec = converter.payload_codec
    assert codec is not None
    texts: dict[str, str | bytes] = {"worker logs": captured_logs.getvalue()}
    for workflow_id, history in histories.items():
        raw = json.dumps(history)
        assert "binary/encrypted" in raw or "YmluYXJ5L2VuY3J5cHRlZA" in raw
        texts[f"history of {workflow_id} (raw)"] = raw
        texts[f"history of {workflow_id} (decoded with the key)"] = await _decoded(
            history, codec)
    texts["spans"] = "\n".join(span.to_json() for span in spans.get_finished_spans())
    texts["metrics"] = collected.to_json() if collected else ""
    assert texts["spans"], "the worker exported no spans: the scan would see nothing"

    hits = scan_texts(canary, texts)
    # The state dir minus what holds the password by design (each node's passfile copy)
    # or only its salted SCRAM verifier (the data directories).
    data_dirs = [p for p in settings.state_dir.rglob("data") if (p / "PG_VERSION").exists()]
    hits += scan_files(canary, [settings.state_dir, REPO_ROOT / "demo-out",
                                REPO_ROOT / "bench" / "results"],
                       skip=data_dirs, skip_names=[STANDBY_PASSFILE])
    assert hits == [], f"the replication password was found in: {hits}"
    # And the passfile copies are where the servers read it, each 0600.
    copies = sorted(settings.state_dir.rglob(STANDBY_PASSFILE))
    assert len(copies) == 2 and all(contains(canary, p.read_bytes()) for p in copies)
    assert {p.stat().st_mode & 0o777 for p in copies} == {0o600}
