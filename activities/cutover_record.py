"""The instance's cutover lock and its log of cutover events, as files under the state dir.

The lock (``instances/<id>/cutover.lock``, holding the workflow id) makes "one cutover at a
time per instance" hold even for cutovers started outside the protection workflow; it is
created with ``O_EXCL`` so two preflights cannot both take it. The log is JSON lines, one per
cutover, written at most once per workflow run so a retried finalise does not repeat it (the
workflow id is per instance, ``cutover-<id>``: every cutover of an instance shares it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from infra.errors import InvalidRequestError
from models.jsonlog import append_entry, read_entries


class CutoverRecord:
    """Lock and event log of one instance."""

    def __init__(self, state_dir: Path, instance_id: str) -> None:
        self.folder = state_dir / "instances" / instance_id
        self.instance_id = instance_id

    @property
    def lock_path(self) -> Path:
        """The lock file."""
        return self.folder / "cutover.lock"

    @property
    def log_path(self) -> Path:
        """The event log."""
        return self.folder / "cutovers.jsonl"

    def lock_holder(self) -> str | None:
        """Workflow id holding the lock, if any."""
        try:
            return self.lock_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def take_lock(self, workflow_id: str) -> None:
        """Take the lock for ``workflow_id`` (idempotent for its holder).

        Raises:
            InvalidRequestError: another cutover holds it.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self.lock_holder()
            if holder != workflow_id:
                raise InvalidRequestError(
                    f"cutover {holder} of {self.instance_id} is in progress"
                ) from None
            return
        with os.fdopen(fd, "w") as out:
            out.write(workflow_id + "\n")

    def release_lock(self, workflow_id: str) -> None:
        """Remove the lock if ``workflow_id`` holds it."""
        if self.lock_holder() == workflow_id:
            self.lock_path.unlink(missing_ok=True)

    def append_event(self, workflow_id: str, run_id: str, event: dict[str, Any]) -> bool:
        """Append ``event`` unless one of run ``run_id`` is already there; ``True`` if added."""
        if any(entry.get("run_id") == run_id for entry in read_entries(self.log_path)):
            return False  # a retry after a crash must not record the event twice
        # Torn-append safe (models/jsonlog.py): a worker killed mid-append must not make
        # every later finalise fail on the half-written line.
        append_entry(self.log_path, {"workflow_id": workflow_id, "run_id": run_id,
                                     "recorded_at": time.time(), **event})
        return True

    def lock_taken_at(self) -> float | None:
        """When preflight took the lock (epoch seconds), ``None`` if it is not held."""
        try:
            return self.lock_path.stat().st_mtime
        except FileNotFoundError:
            return None
