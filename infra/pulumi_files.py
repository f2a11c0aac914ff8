"""Stacks of a ``file://`` backend that read their outputs and history from its files.

Kept apart from :mod:`infra.pulumi_engine` (the driver) because it leans on two things the
Automation API does not publish: the backend's file layout and ``StackInitMode``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pulumi import automation as auto
from pulumi.automation._stack import StackInitMode  # not re-exported by pulumi.automation

SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"
"""Key that marks an encrypted (secret) value in a Pulumi checkpoint."""


@dataclass(frozen=True)
class BackendFiles:
    """Where a ``file://`` backend keeps one stack's state and update history."""

    checkpoint: Path
    """The stack's checkpoint (``.pulumi/stacks/<project>/<stack>.json``)."""
    history_dir: Path
    """One ``<stack>-<unix nanoseconds>.history.json`` per update."""


class FileBackendStack(auto.Stack):
    """A stack of a ``file://`` backend that reads outputs and the last update from its files.

    Why: ``Stack.up`` and ``Stack.destroy`` follow the engine run with ``stack output`` (twice,
    masked and unmasked) and ``stack history``: three more CLI processes, each opening the
    backend and two of them deriving the passphrase key (PBKDF2, 10^6 rounds); about 1.1 s on
    this machine, after the work is done. The backend keeps both as plain JSON; reading them
    takes milliseconds. Anything unexpected (no file, another format, a secret output, which
    is encrypted there) falls back to the CLI.

    Selecting an existing stack runs no ``stack select`` either: every command the SDK runs
    names the stack (``--stack``), so selecting it in the workspace only cost a CLI start.
    """

    def __init__(self, name: str, workspace: auto.Workspace, files: BackendFiles) -> None:
        self._files = files
        if files.checkpoint.exists():
            # What Stack.__init__ keeps, without its `stack select` (see the class docstring).
            self.name, self.workspace, self._mode = name, workspace, StackInitMode.SELECT
            return
        try:
            super().__init__(name, workspace, StackInitMode.CREATE)
        except auto.StackAlreadyExistsError:  # created meanwhile by a concurrent caller
            super().__init__(name, workspace, StackInitMode.SELECT)

    def outputs(self) -> auto.OutputMap:
        """The stack resource's outputs from the checkpoint (the CLI for secret ones)."""
        try:
            data = json.loads(self._files.checkpoint.read_text())
            resources = data["checkpoint"]["latest"].get("resources") or []
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return super().outputs()
        for resource in resources:
            if resource.get("type") == "pulumi:pulumi:Stack":
                values = resource.get("outputs") or {}
                if SECRET_SIGNATURE in json.dumps(values):
                    return super().outputs()
                return {k: auto.OutputValue(value=v, secret=False) for k, v in values.items()}
        return {}

    def info(self, show_secrets: bool = True) -> auto.UpdateSummary | None:
        """The last update's summary from the newest history file (the CLI if unreadable)."""
        try:
            newest = max(self._files.history_dir.glob("*.history.json"), key=_history_stamp)
            entry = json.loads(newest.read_text())
            return auto.UpdateSummary(
                kind=entry["kind"],
                start_time=datetime.fromtimestamp(entry["startTime"], tz=UTC),
                message=entry.get("message", ""),
                environment=entry.get("environment") or {},
                config={},
                result=entry["result"],
                end_time=datetime.fromtimestamp(entry["endTime"], tz=UTC),
                version=entry.get("version"),
                resource_changes=entry.get("resourceChanges") or {},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return super().info(show_secrets)


def _history_stamp(path: Path) -> int:
    """The update's time in nanoseconds, from ``<stack>-<nanoseconds>.history.json``."""
    return int(path.name.removesuffix(".history.json").rsplit("-", 1)[1])
