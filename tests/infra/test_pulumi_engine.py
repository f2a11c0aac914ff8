"""The Automation API driver against the real Pulumi engine and a ``file://`` backend."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pulumi
import pytest
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

from infra.errors import InfraError, InvalidRequestError, StackBusyError
from infra.pulumi_engine import PulumiConfig, StackDriver, launch_support
from tests.conftest import (
    autogroup_nice,
    pulumi_processes,
    runs_provider_host,
    survivors,
    worker_env,
)
from tests.infra.file_program import smoke_program
from workers.settings import REPO_ROOT, Settings


def test_up_refresh_destroy_round_trip(stack_driver: StackDriver, tmp_path: Path) -> None:
    """up creates the file, refresh reads drift back, destroy removes file and stack."""
    target = tmp_path / "managed" / "hello.txt"
    program = smoke_program(str(target), "first\n")

    created = stack_driver.up("smoke-roundtrip", program)
    assert target.read_text() == "first\n"
    assert created.outputs["path"] == str(target)
    assert created.summary.get("create") == 2  # the stack itself and the file
    assert stack_driver.exists("smoke-roundtrip")

    # A second up with the same program changes nothing: the provider is idempotent.
    again = stack_driver.up("smoke-roundtrip", program)
    assert again.summary.get("create") is None and again.summary.get("update") is None

    # Someone deletes the file behind Pulumi's back; refresh notices it is gone.
    target.unlink()
    refreshed = stack_driver.refresh("smoke-roundtrip", program)
    assert refreshed.summary.get("delete") == 1

    # up recreates it (converges to the program).
    stack_driver.up("smoke-roundtrip", program)
    assert target.read_text() == "first\n"

    assert stack_driver.destroy("smoke-roundtrip", program) is True
    assert not target.exists()
    assert not stack_driver.exists("smoke-roundtrip")
    assert stack_driver.destroy("smoke-roundtrip", program) is False


def test_secrets_use_the_passphrase_file(
    stack_driver: StackDriver, pulumi_config: PulumiConfig, tmp_path: Path
) -> None:
    """Stack secrets are sealed with the passphrase file: another passphrase cannot open them."""
    target = tmp_path / "secret.txt"
    program = smoke_program(str(target), "x")
    stack_driver.up("smoke-secrets", program, config={"note": "plain"})
    salt = (pulumi_config.work_root / "smoke-secrets" / "Pulumi.smoke-secrets.yaml").read_text()
    assert salt.startswith("encryptionsalt: v1:")

    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text("not the passphrase\n")
    intruder = StackDriver(dataclasses.replace(pulumi_config, passphrase_file=wrong))
    with pytest.raises(InfraError, match="passphrase"):
        intruder.up("smoke-secrets", program)
    stack_driver.destroy("smoke-secrets", program)


def test_live_lock_makes_the_stack_busy(stack_driver: StackDriver, tmp_path: Path) -> None:
    """A lock held by a live process is respected: the operation fails as busy, lock kept."""
    target = tmp_path / "busy.txt"
    program = smoke_program(str(target), "x")
    stack_driver.up("smoke-busy", program)
    lock_file = _write_lock(stack_driver, "smoke-busy", os.getpid())
    with pytest.raises(StackBusyError):
        stack_driver.up("smoke-busy", smoke_program(str(target), "y"))
    assert lock_file.exists() and target.read_text() == "x"
    lock_file.unlink()
    stack_driver.destroy("smoke-busy", program)


def _write_lock(driver: StackDriver, stack_name: str, pid: int) -> Path:
    backend = Path(driver._config.backend_url.removeprefix("file://"))
    lock_dir = backend / ".pulumi" / "locks" / "organization" / "shadowshift" / stack_name
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = {
        "pid": pid,
        "username": "root",
        "hostname": socket.gethostname(),
        "timestamp": "2026-01-01T00:00:00Z",
    }
    lock_file = lock_dir / f"lock-{pid}.json"
    lock_file.write_text(json.dumps(lock))
    return lock_file


def test_stale_lock_of_a_dead_process_is_cleared(stack_driver: StackDriver, tmp_path: Path) -> None:
    """A lock left by a process that is gone no longer blocks the stack."""
    target = tmp_path / "locked.txt"
    program = smoke_program(str(target), "x")
    stack_driver.up("smoke-lock", program)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock_file = _write_lock(stack_driver, "smoke-lock", dead.pid)

    stack_driver.up("smoke-lock", smoke_program(str(target), "y"))
    assert target.read_text() == "y"
    assert not lock_file.exists()
    stack_driver.destroy("smoke-lock", program)


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "x" * 200, "with space"])
def test_unsafe_stack_names_are_refused(stack_driver: StackDriver, bad: str) -> None:
    """Stack names that could escape the state folder never reach Pulumi."""
    with pytest.raises(InvalidRequestError):
        stack_driver.up(bad, smoke_program("/tmp/never", "x"))


SUPPORT = launch_support()
AUTOGROUP = Path("/proc/self/autogroup")


class _SchedulingProbe(ResourceProvider):
    """Reports, from inside the provider host, its scheduling and a started server's."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        # A server the way the local providers start one: in a session of its own.
        server = subprocess.Popen(["sleep", "30"], start_new_session=True)
        try:
            outs = {"host_sid": os.getsid(0), "host_nice": os.nice(0),
                    "host_autogroup": AUTOGROUP.read_text().strip(),
                    "server_nice": os.getpriority(os.PRIO_PROCESS, server.pid),
                    "server_autogroup": Path(f"/proc/{server.pid}/autogroup").read_text()
                    .strip()}
        finally:
            server.kill()
            server.wait()
        return CreateResult(id_="probe", outs={"facts": outs})


class _Probe(Resource):
    facts: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str) -> None:
        super().__init__(_SchedulingProbe(), name, {"facts": None})


def _probe_program() -> None:
    pulumi.export("facts", _Probe("probe").facts)


@pytest.mark.skipif(not SUPPORT.own_autogroup,
                    reason="the CLI cannot have an autogroup of its own here: it needs a "
                    "writable /proc/self/autogroup, setsid -w and setpriv --pdeathsig")
@pytest.mark.parametrize("nice", [19, 0])
def test_the_cli_yields_the_cpu_but_servers_it_starts_do_not(
    pulumi_config: PulumiConfig, nice: int
) -> None:
    """With ``cpu_nice`` the CLI and its provider host run in a session of their own whose
    autogroup has that nice; a server a provider starts in a new session gets a new autogroup
    at normal priority, and no process's own nice changes (a standby would inherit it). With 0
    the CLI runs in the caller's session and autogroup."""
    driver = StackDriver(dataclasses.replace(pulumi_config, cpu_nice=nice))
    outputs = driver.up(f"probe-{nice}", _probe_program).outputs["facts"]
    driver.destroy(f"probe-{nice}", _probe_program)

    own_nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert (outputs["host_sid"] != os.getsid(0)) is bool(nice)
    if nice:
        assert autogroup_nice(outputs["host_autogroup"]) == nice
    else:  # the caller's own autogroup, whatever it is (the root one reads as an empty line)
        assert outputs["host_autogroup"] == AUTOGROUP.read_text().strip()
    assert outputs["host_nice"] == own_nice and outputs["server_nice"] == own_nice
    assert autogroup_nice(outputs["server_autogroup"]) == 0
    assert outputs["server_autogroup"] != outputs["host_autogroup"]


class _Stall(ResourceProvider):
    """A create that says it started, then takes a minute printing nothing (so no broken
    pipe ends its host)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        Path(props["marker"]).touch()
        time.sleep(60)
        return CreateResult(id_="stall", outs={})


class _Stalled(Resource):
    def __init__(self, name: str, marker: str) -> None:
        super().__init__(_Stall(), name, {"marker": marker})


def stalled_program(marker: str) -> None:
    """Imported by the child process of the test below."""
    _Stalled("stall", marker)


@pytest.mark.skipif(not SUPPORT.pdeathsig,
                    reason="setpriv --pdeathsig is missing (util-linux < 2.33)")
@pytest.mark.integration  # starts a server or our program
def test_pulumi_dies_with_the_worker_that_ran_it(settings: Settings, tmp_path: Path) -> None:
    """A worker SIGKILLed mid-update takes its Pulumi CLI and provider host along, although
    they run in a session of their own: nothing is left serving a dead update."""
    marker = tmp_path / "in-create"
    script = (
        "import sys\n"
        "from infra.pulumi_engine import StackDriver\n"
        "from tests.infra.test_pulumi_engine import stalled_program\n"
        "from workers.registry import pulumi_config\n"
        "from workers.settings import load_settings\n"
        "StackDriver(pulumi_config(load_settings()))"
        ".up('stall', lambda: stalled_program(sys.argv[1]))\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script, str(marker)], cwd=REPO_ROOT,
                              env=worker_env(settings), start_new_session=True)
    pulumi: dict[psutil.Process, str] = {}
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():  # the host is in its minute-long create
            assert worker.poll() is None and time.monotonic() < deadline, "create never ran"
            time.sleep(0.05)
        pulumi = pulumi_processes(worker.pid)
        assert runs_provider_host(pulumi)
        worker.kill()
        worker.wait()
        alive = survivors(pulumi, timeout_s=10)
        assert not alive, f"outlived the worker: {[pulumi[p] for p in alive]}"
    finally:
        for process in [worker, *pulumi]:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                process.kill()
