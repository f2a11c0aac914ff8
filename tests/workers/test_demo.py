"""The end-to-end demo, compressed: real dev server, two namespace hosts with their agents, a
worker process, PostgreSQL, HAProxy, Pulumi.

The end-to-end run replays the synthetic disk degradation with a steady state of four trace
hours (``--trace synthetic --healthy-hours 4 --threshold 60``): the real ASD incident that
``make demo`` replays needs 40 trace hours of history (``tests/models/test_demo_trace.py``
checks the model on it offline). Everything else (replay speed, sampling, the model, the
policy, the cutover) is what ``make demo`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from contracts.policy import Policy
from infra.hosts import cleanup, records
from infra.local.ports import free_port
from infra.pulumi_engine import StackDriver
from models.predictor import DEFAULT_MODEL_PATH, Predictor
from workers.demo import demo
from workers.demo_run import DemoOptions
from workers.demo_services import fresh_state_dir, hosts_root
from workers.demo_trace import build_trace, offline_verdict
from workers.hosts_lab import HostsLab, lab_settings
from workers.registry import pulumi_config
from workers.settings import REPO_ROOT


def _processes_under(folder: Path) -> list[str]:
    """Live processes that belong to a demo run in ``folder``: PostgreSQL and HAProxy name it
    on their command line, the worker and its Pulumi children carry it in their environment."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        try:
            environment = process.environ()
        except psutil.Error:
            environment = {}
        if str(folder) in line or str(folder) in environment.get("SHADOWSHIFT_STATE_DIR", ""):
            found.append(line)
    return found


def _hosts_under(folder: Path) -> list[str]:
    """Namespace hosts (recorded) whose fleet lives in ``folder``."""
    return [h.netns for h in records.hosts() if Path(h.state_dir).is_relative_to(folder)]


def _demo_hosts(state_dir: Path) -> list[str]:
    """Namespace hosts left by the demo run in ``state_dir`` (it notes their folder)."""
    root = Path((state_dir / "hosts-root").read_text().strip())
    return _hosts_under(root) + ([str(root)] if root.exists() else [])


def _listening(address: str) -> bool:
    """Whether something listens on ``host:port`` (another lab's gateway on the same port but
    its own address, as a concurrent hosts test runs, does not count)."""
    host, port = address.rsplit(":", 1)
    host = "127.0.0.1" if host == "localhost" else host
    return any(c.laddr and c.laddr.port == int(port) and c.laddr.ip in (host, "0.0.0.0", "::")
               and c.status == psutil.CONN_LISTEN for c in psutil.net_connections("tcp"))


def test_the_trace_is_one_the_model_predicts(tmp_path: Path) -> None:
    """Offline, on the synthetic disk degradation (the real incident has its own test in
    tests/models/test_demo_trace.py): the healthy part stays far below the threshold and the
    policy fires before the recorded failure."""
    trace = build_trace(tmp_path, healthy_hours=4, kind="synthetic")
    assert trace.start < trace.onset < trace.failure_at <= trace.end
    verdict = offline_verdict(trace, Predictor.load(DEFAULT_MODEL_PATH),
                              Policy(threshold=60, consecutive_readings=3), 48)
    assert verdict.healthy_max_score < 60
    assert verdict.first_migrate_at is not None
    assert trace.onset < verdict.first_migrate_at < trace.failure_at
    with pytest.raises(ValueError, match="healthy_hours"):
        build_trace(tmp_path, healthy_hours=500, kind="synthetic")


@pytest.mark.integration  # starts a server or our program
async def test_demo_end_to_end(tmp_path: Path) -> None:
    """Protect a loaded primary, replay the degradation, cut over before the failure, rejoin:
    every figure of the summary comes from what happened, and nothing is left running."""
    state_dir, out_dir = tmp_path / "state", tmp_path / "out"
    tmp_path.chmod(0o755)
    started = time.monotonic()
    summary = await asyncio.wait_for(
        demo(DemoOptions(trace="synthetic", healthy_hours=4, threshold=60,
                         recovery_timeout_s=60), state_dir, out_dir), 300)
    took = time.monotonic() - started

    assert json.loads((out_dir / "summary.json").read_text()) == summary
    assert summary["cutovers"] == 1
    assert summary["history_payloads_encrypted"] is True
    # Before the failure, by at least one trace step, and no more than the precursor allows.
    assert 0 < summary["lead_time_s"] < took
    assert summary["lead_time_trace_s"] >= 300
    assert summary["primary_killed_while_serving"] is False
    assert summary["lost_acked_writes"] == 0
    assert summary["acked_writes"] > 1000
    assert 0 < summary["blackout_ms"] < 10_000
    assert summary["failed_client_ops"] >= summary["failed_client_ops_during_cutover"] >= 0
    # The demo's primary runs with wal_log_hints, so the former primary is rewound and
    # rejoins; a retire (and a fresh copy) would be reported as such, not as a rejoin.
    assert summary["former_primary_recovery"] == "rejoined"
    assert summary["former_primary_rejoined_as_shadow"] is True
    assert summary["rejoined_after_cutover_s"] == summary["recovered_after_cutover_s"] > 0
    # Between the cutover and the failure the watcher scores the new, healthy primary (the
    # old one still replays the degradation until it fails).
    last = summary["last_report_before_failure"]
    assert last is not None and last["node"].endswith("-shadow"), last
    assert last["readiness_score"] < 60
    # The cost figure is measured: recompute it from its parts. The watcher's heartbeats reach
    # the server every 96 s (80 % of its 2-minute heartbeat timeout), measured, not assumed.
    window = summary["steady_state_window_s"]
    assert window > 10
    history = sum(v for k, v in summary["actions_in_window"].items() if k != "heartbeat")
    expected = (history * 3600 / window + summary["heartbeats_per_hour"]
                + summary["watcher_restarts_per_hour_added"])
    # (the window in the summary is rounded to 0.1 s)
    assert summary["temporal_actions_per_instance_hour"] == pytest.approx(expected, rel=0.01)
    if summary["heartbeats_per_hour_from"] == "measured intervals":
        assert summary["watcher_heartbeats_seen"] >= 2
        assert summary["heartbeats_per_hour"] == pytest.approx(3600 / 96, rel=0.15)
    png = (out_dir / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert _processes_under(state_dir) == []
    assert _demo_hosts(state_dir) == []


@pytest.mark.integration  # starts a server or our program
def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the shadow is
    being provisioned: exit 130, no server, HAProxy, worker or Pulumi process left behind."""
    tmp_path.chmod(0o755)
    state_dir, out_dir = tmp_path / "state", tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.demo", "--healthy-hours", "4",
         "--state-dir", str(state_dir), "--out-dir", str(out_dir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines = []
    server_address = ""
    for line in process.stdout:
        lines.append(line)
        if "Temporal dev server at" in line:
            server_address = line.split("Temporal dev server at ")[1].split(";")[0]
        if "Protection phase: provisioning" in line:
            break
    else:
        pytest.fail("the demo never started protecting:\n" + "".join(lines))
    assert _processes_under(state_dir), "the demo's processes should be running now"
    os.killpg(process.pid, signal.SIGINT)  # its own session: the group is the demo's
    rest, _ = process.communicate(timeout=90)
    assert process.returncode == 130, "".join(lines) + rest
    assert "Interrupted" in rest
    time.sleep(1)  # immediate-mode PostgreSQL children exit right after their postmaster
    assert _processes_under(state_dir) == []
    assert _demo_hosts(state_dir) == []
    assert server_address and not _listening(server_address)  # the dev server is gone too


@pytest.mark.integration  # starts a server or our program
def test_a_killed_demo_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    """The hosts a SIGKILLed demo left (namespaces, disks, cgroups, the processes running in
    them, the gateway) are removed, and the folder emptied, by the next run; a folder the demo
    did not make is refused and left alone."""
    tmp_path.chmod(0o755)
    state_dir = fresh_state_dir(tmp_path / "state")
    settings = lab_settings(state_dir)
    root = hosts_root(state_dir)  # where the demo puts its hosts
    lab = HostsLab.create(StackDriver(pulumi_config(settings)), root, ("host-a",),
                          ("127.0.0.1", free_port()), disk_mib=64)
    try:
        # A process the killed run left in the host: not our child (a zombie child of ours
        # would hold its cgroup), as a dead demo's agent is no one's child.
        started = lab.hosts["host-a"].run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"])
        sleeper = psutil.Process(int(started.stdout.split()[-1]))
        assert _hosts_under(root) and lab.gateway.running() and sleeper.is_running()
        fresh_state_dir(state_dir)
        with contextlib.suppress(psutil.NoSuchProcess):  # killed with its host
            assert sleeper.status() == psutil.STATUS_ZOMBIE
        assert _hosts_under(root) == [] and not lab.gateway.running() and not root.exists()
        assert cleanup.leftovers(fleet=lab.fleet.name) == []
        assert list(state_dir.iterdir()) == [state_dir / ".shadowshift-demo"]
    finally:
        cleanup.remove_fleet(lab.fleet.name, index=lab.fleet.index)
        lab.gateway.stop()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="not made by the demo"):
        fresh_state_dir(other)
    assert (other / "notes.txt").read_text() == "keep me"
