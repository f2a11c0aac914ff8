"""The Automation API driver against the real Pulumi engine and a ``file://`` backend."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from infra.errors import InfraError, InvalidRequestError, StackBusyError
from infra.pulumi_engine import PulumiConfig, StackDriver
from infra.smoke import smoke_program


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
