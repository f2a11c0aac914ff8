"""The one thin layer over the Pulumi Automation API.

Every stack gets its own ``work_dir`` (concurrent stack selection in one folder rewrites
``workspace.json``), secrets come from a passphrase *file*, and the CLI never reaches for the
network (update checks and automatic plugin downloads are off). Pulumi's exceptions are
translated into :mod:`infra.errors` so activities can decide what is retryable.

All calls block: run them from synchronous activities on a thread pool.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psutil
from opentelemetry import trace
from pulumi import automation as auto

from infra.errors import InfraError, InvalidRequestError, StackBusyError, StackProgramError
from infra.names import validate_stack_name
from infra.pulumi_files import BackendFiles, FileBackendStack

log = logging.getLogger(__name__)
tracer = trace.get_tracer("shadowshift.pulumi")

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_DIR = REPO_ROOT / "scripts" / "bin"
"""Holds our ``pulumi-resource-pulumi-python`` launcher for Python dynamic providers."""
YIELDING_LAUNCHER = LAUNCHER_DIR / "pulumi-yielding"
"""Runs the CLI in a session of its own at a low CPU share (:attr:`PulumiConfig.cpu_nice`)."""


@dataclass(frozen=True)
class LaunchSupport:
    """What this machine offers the launchers in ``scripts/bin`` (probed once per process)."""

    pdeathsig: bool
    """``setpriv --pdeathsig`` works (util-linux 2.33 or later): a child can die with its
    parent."""
    own_autogroup: bool
    """The CLI can get a session and scheduler autogroup of its own (``setsid -w`` and a
    writable ``/proc/self/autogroup``)."""


@cache
def launch_support() -> LaunchSupport:
    """Probe :class:`LaunchSupport` (two short processes, once per process)."""
    pdeathsig = _runs("setpriv", "--pdeathsig", "KILL", "true")
    own_autogroup = (pdeathsig and os.access("/proc/self/autogroup", os.W_OK)
                     and _runs("setsid", "-w", "true"))
    return LaunchSupport(pdeathsig, own_autogroup)


def _runs(*argv: str) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0
    except OSError:
        return False

ProgressCallback = Callable[[str], None]
"""Receives each line Pulumi prints; activities turn it into heartbeats."""


@dataclass(frozen=True, kw_only=True)
class PulumiConfig:
    """Where and how Pulumi stores stacks."""

    backend_url: str
    """State backend, e.g. ``file:///var/lib/shadowshift/pulumi``."""
    passphrase_file: Path
    """File with the passphrase that encrypts stack secrets."""
    work_root: Path
    """Parent folder of the per-stack work dirs."""
    pulumi_root: Path | None = None
    """Folder containing ``bin/pulumi``; ``None`` runs ``pulumi`` from ``PATH``."""
    project_name: str = "shadowshift"
    """Pulumi project that owns every ShadowShift stack."""
    cpu_nice: int = 19
    """Nice of the scheduler autogroup the CLI and its provider host run in (0: the CLI runs
    as a child of the worker like any other). Servers the providers start keep normal
    priority; see ``scripts/bin/pulumi-yielding``."""


@dataclass(frozen=True)
class StackResult:
    """What an ``up`` or ``refresh`` left behind."""

    outputs: dict[str, Any]
    """Stack outputs, secrets unwrapped."""
    summary: dict[str, int]
    """Resource changes by kind (``create``, ``same``, ``delete``...)."""


@dataclass(frozen=True)
class _Cli:
    """How a driver runs Pulumi: the command the SDK calls (the CLI, or ``pulumi-yielding``
    in front of it) and the environment the launchers read."""

    command: auto.PulumiCommand
    launcher_env: dict[str, str]


class StackDriver:
    """Runs ``up``/``refresh``/``destroy`` for inline programs on one backend."""

    def __init__(self, config: PulumiConfig) -> None:
        self._config = config
        self._cli: _Cli | None = None

    def up(
        self,
        stack_name: str,
        program: Callable[[], None],
        *,
        config: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> StackResult:
        """Create or update ``stack_name`` so it matches ``program``; converges after a crash."""
        with tracer.start_as_current_span("pulumi.up", attributes={"pulumi.stack": stack_name}):
            return self._up(stack_name, program, config, on_progress)

    def _up(
        self,
        stack_name: str,
        program: Callable[[], None],
        config: Mapping[str, str] | None,
        on_progress: ProgressCallback | None,
    ) -> StackResult:
        stack = self._stack(stack_name, program, config)
        self._clear_stale_locks(stack_name)
        # A crash mid-update leaves pending operations; Pulumi only warns about them and our
        # providers' create/read converge on whatever a crashed attempt left, so up is enough.
        try:
            result = stack.up(on_output=on_progress, color="never", suppress_progress=True)
        except auto.CommandError as err:
            raise self._translate(stack_name, err) from err
        return StackResult(
            outputs={k: v.value for k, v in result.outputs.items()},
            summary=_changes(result.summary.resource_changes),
        )

    def refresh(
        self,
        stack_name: str,
        program: Callable[[], None],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> StackResult:
        """Read the real state of every resource into the stack's state."""
        stack = self._stack(stack_name, program, None)
        self._clear_stale_locks(stack_name)
        with tracer.start_as_current_span(
            "pulumi.refresh", attributes={"pulumi.stack": stack_name}
        ):
            summary = self._refresh(stack, on_progress)
        outputs = stack.outputs()
        return StackResult(outputs={k: v.value for k, v in outputs.items()}, summary=summary)

    def outputs(self, stack_name: str, program: Callable[[], None]) -> dict[str, Any]:
        """The stack's current outputs (empty when it does not exist)."""
        if not self.exists(stack_name):
            return {}
        stack = self._stack(stack_name, program, None)
        return {k: v.value for k, v in stack.outputs().items()}

    def destroy(
        self,
        stack_name: str,
        program: Callable[[], None],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> bool:
        """Delete every resource of the stack and the stack itself.

        Returns ``False`` when there was no stack (destroying twice is fine).
        """
        if not self.exists(stack_name):
            shutil.rmtree(self._work_dir(stack_name), ignore_errors=True)
            return False
        stack = self._stack(stack_name, program, None)
        self._clear_stale_locks(stack_name)
        attributes = {"pulumi.stack": stack_name}
        try:
            with tracer.start_as_current_span("pulumi.destroy", attributes=attributes):
                stack.destroy(on_output=on_progress, color="never", suppress_progress=True)
                stack.workspace.remove_stack(stack_name)
        except auto.CommandError as err:
            raise self._translate(stack_name, err) from err
        shutil.rmtree(self._work_dir(stack_name), ignore_errors=True)
        return True

    def set_config(self, stack_name: str, values: Mapping[str, str]) -> None:
        """Set plain (non-secret) config values of an existing stack; the next ``up`` sees them.

        Used to keep a stack's configuration in step with changes made outside Pulumi (the
        AWS weight fast path), so a later ``up`` does not revert them. Setting the same values
        again changes nothing. Keys without ``project:`` get the project's namespace.

        The values go straight into the stack's settings file (``Pulumi.<stack>.yaml`` in its
        work dir, where ``pulumi config set`` writes them on a file backend) through the
        workspace's own reader and writer: milliseconds instead of two CLI runs (0.24 s each
        on an idle 2-core machine, measured; 1.5-3 s for the pair was seen under heavy load),
        which matters inside a cutover's heartbeat window.

        Raises:
            InvalidRequestError: the stack does not exist (config alone never creates one).
        """
        if not self.exists(stack_name):
            raise InvalidRequestError(f"stack {stack_name} does not exist; create it with up")
        workspace = self._settings_workspace(stack_name)
        try:
            settings = workspace.stack_settings(stack_name)
        except FileNotFoundError:
            settings = auto.StackSettings()
        config = dict(settings.config or {})
        config.update({self._config_key(k): v for k, v in values.items()})
        settings.config = config
        # The workspace writes the file in place; a worker killed mid-write would leave it
        # truncated (and the passphrase salt with it). Write a copy beside it, then rename.
        work_dir = Path(workspace.work_dir)
        with tempfile.TemporaryDirectory(dir=work_dir, prefix=".config-") as scratch:
            self._settings_workspace(stack_name, Path(scratch)).save_stack_settings(
                stack_name, settings
            )
            for written in Path(scratch).glob("Pulumi.*"):
                os.replace(written, work_dir / written.name)

    def get_config(self, stack_name: str, key: str) -> str | None:
        """A plain config value of the stack (``project:key`` or ``key``); ``None`` when unset,
        secret, or when there is no such stack."""
        if not self.exists(stack_name):
            return None
        try:
            settings = self._settings_workspace(stack_name).stack_settings(stack_name)
        except FileNotFoundError:
            return None
        value = (settings.config or {}).get(self._config_key(key))
        return value if isinstance(value, str) else None

    def _settings_workspace(
        self, stack_name: str, work_dir: Path | None = None
    ) -> auto.LocalWorkspace:
        """The stack's workspace for reading and writing its settings file (runs no CLI)."""
        validate_stack_name(stack_name)
        return auto.LocalWorkspace(
            work_dir=str(work_dir or self._work_dir(stack_name)),
            pulumi_command=self._launch().command,
            env_vars=self._env(),
        )

    def _config_key(self, key: str) -> str:
        return key if ":" in key else f"{self._config.project_name}:{key}"

    def exists(self, stack_name: str) -> bool:
        """Whether the backend has a stack of that name."""
        validate_stack_name(stack_name)
        return self._stack_state_file(stack_name).exists()

    # -- internals -------------------------------------------------------------------------

    def _refresh(self, stack: auto.Stack, on_progress: ProgressCallback | None) -> dict[str, int]:
        try:
            result = stack.refresh(on_output=on_progress, color="never", clear_pending_creates=True)
        except auto.CommandError as err:
            raise self._translate(stack.name, err) from err
        return _changes(result.summary.resource_changes)

    def _stack(
        self,
        stack_name: str,
        program: Callable[[], None],
        config: Mapping[str, str] | None,
    ) -> auto.Stack:
        validate_stack_name(stack_name)
        work_dir = self._work_dir(stack_name)
        work_dir.mkdir(parents=True, exist_ok=True)
        backend = self._backend_dir()
        if backend is not None:
            backend.mkdir(parents=True, exist_ok=True)
        settings = auto.ProjectSettings(
            name=self._config.project_name,
            runtime="python",
            backend=auto.ProjectBackend(url=self._config.backend_url),
            main=os.getcwd(),  # what create_or_select_stack sets for inline programs
        )
        try:
            workspace = auto.LocalWorkspace(
                work_dir=str(work_dir),
                program=program,
                pulumi_command=self._launch().command,
                env_vars=self._env(),
                project_settings=settings,
                secrets_provider="passphrase",
            )
            files = BackendFiles(
                checkpoint=self._stack_state_file(stack_name),
                history_dir=self._history_dir(stack_name),
            )
            stack = FileBackendStack(stack_name, workspace, files)
            if config:
                stack.set_all_config({k: auto.ConfigValue(v) for k, v in config.items()})
        except auto.CommandError as err:
            raise self._translate(stack_name, err) from err
        return stack

    def _launch(self) -> _Cli:
        """The CLI and what the launchers in ``scripts/bin`` are told, decided once."""
        if self._cli is None:
            root = str(self._config.pulumi_root) if self._config.pulumi_root else None
            try:
                command = auto.PulumiCommand(root=root)
            except (FileNotFoundError, auto.errors.InvalidVersionError) as err:
                raise InfraError(
                    f"the Pulumi CLI is unusable ({err}); run `make setup` or set "
                    "SHADOWSHIFT_PULUMI_ROOT to a folder with bin/pulumi"
                ) from err
            env: dict[str, str] = {}
            support = launch_support()
            if support.pdeathsig:  # the provider host's launcher ties it to the CLI
                env["SETPRIV_PDEATHSIG"] = "1"
            if support.pdeathsig and self._config.cpu_nice:
                env["YIELDING_PULUMI_CLI"] = command.command
                if support.own_autogroup:
                    env["YIELDING_PULUMI_NICE"] = str(self._config.cpu_nice)
                command.command = str(YIELDING_LAUNCHER)
            self._cli = _Cli(command, env)
        return self._cli

    def _env(self) -> dict[str, str]:
        tool_dirs = [str(LAUNCHER_DIR)]
        if self._config.pulumi_root:
            tool_dirs.insert(0, str(self._config.pulumi_root / "bin"))
        python_path = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        return {
            "PULUMI_BACKEND_URL": self._config.backend_url,
            "PULUMI_CONFIG_PASSPHRASE_FILE": str(self._config.passphrase_file),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            # The dynamic-provider host unpickles providers by reference to our modules.
            "PYTHONPATH": python_path,
            "PATH": os.pathsep.join([*tool_dirs, os.environ.get("PATH", "")]),
            **self._launch().launcher_env,
        }

    def _work_dir(self, stack_name: str) -> Path:
        return self._config.work_root / stack_name

    def _backend_dir(self) -> Path | None:
        url = self._config.backend_url
        return Path(url.removeprefix("file://")) if url.startswith("file://") else None

    def _stack_state_file(self, stack_name: str) -> Path:
        backend = self._backend_dir()
        if backend is None:
            raise InfraError("only file:// backends are supported by this driver today")
        stacks = backend / ".pulumi" / "stacks" / self._config.project_name
        return stacks / f"{stack_name}.json"

    def _history_dir(self, stack_name: str) -> Path:
        backend = self._backend_dir()
        if backend is None:
            raise InfraError("only file:// backends are supported by this driver today")
        return backend / ".pulumi" / "history" / self._config.project_name / stack_name

    def _clear_stale_locks(self, stack_name: str) -> None:
        """Remove lock files whose holder provably died (same host, pid gone).

        On the file backend ``stack.cancel()`` only deletes lock files and would happily
        break the lock of a live update, so we prove the holder is dead first.
        """
        backend = self._backend_dir()
        if backend is None:
            return
        lock_dir = backend / ".pulumi" / "locks" / "organization"
        lock_dir = lock_dir / self._config.project_name / stack_name
        for lock_file in sorted(lock_dir.glob("*.json")):
            try:
                lock = json.loads(lock_file.read_text())
            except (OSError, ValueError):
                continue
            pid, host = int(lock.get("pid", 0)), str(lock.get("hostname", ""))
            if host == socket.gethostname() and pid and not _pid_alive(pid):
                log.warning(
                    "Stack %s is locked by pid %s, which is gone. Clearing the stale lock.",
                    stack_name,
                    pid,
                )
                lock_file.unlink(missing_ok=True)

    def _translate(self, stack_name: str, err: auto.CommandError) -> InfraError:
        if isinstance(err, auto.ConcurrentUpdateError):
            return StackBusyError(f"stack {stack_name} is locked by another live operation")
        text = str(err)
        if isinstance(err, auto.InlineSourceRuntimeError | auto.RuntimeError):
            return StackProgramError(f"stack {stack_name}: the program failed: {_tail(text)}")
        return InfraError(f"stack {stack_name}: pulumi failed: {_tail(text)}")


def _changes(resource_changes: Mapping[Any, int] | None) -> dict[str, int]:
    """Pulumi's change summary keyed by plain strings (``create``, ``same``...)."""
    return {str(getattr(op, "value", op)): count for op, count in (resource_changes or {}).items()}


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
