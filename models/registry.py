"""Model registry: promoted model versions and the pointer that says which one is current.

Layout under the registry directory (a worker's ``<state_dir>/models``)::

    CURRENT.json                 the version pointer (absent: the shipped default model is current)
    versions/<candidate>-<sha>/  pae.txt + pae.json of each promoted model (<sha>: the first
                                 12 hex digits of the model's sha256), never modified again
    promotions.jsonl             one line per promotion decision, promoted or refused, both scores

Promotion is an atomic swap: the model files are copied into a temporary directory that is
renamed into ``versions/`` once complete, then a new pointer is written to a temporary file,
flushed and renamed over ``CURRENT.json``. A reader therefore sees either the old pointer or
the new one, and a pointer never names a half-written model. Readers check the pointer with
one ``stat`` (:meth:`ModelRegistry.pointer_stamp`), cheap enough to do before every batch.

Hand-written rather than a registry service (MLflow and the like) because a worker needs one
file rename and one ``stat``; a server would add a dependency and a failure point to scoring.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.jsonlog import append_entry, read_entries
from models.predictor import DEFAULT_MODEL_PATH, ModelError, Predictor, metadata_path_for

MODEL_FILE = "pae.txt"
"""Name of the model file inside a version directory (metadata: ``pae.json``)."""

DEFAULT_VERSION = 0
"""Version number of the shipped default model (no pointer yet)."""

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ModelPointer:
    """What ``CURRENT.json`` holds."""

    version: int
    """Increases by one with every promotion; 0 = the shipped default."""
    model_path: str
    """Model file, absolute."""
    model_sha256: str
    """Digest of the model file (also in its metadata)."""
    candidate_id: str = ""
    """The retraining run that produced it (makes promotion idempotent)."""
    promoted_at: float = 0.0
    """Epoch seconds."""
    metric: str = ""
    """Metric the promotion was decided on."""
    champion_score: float | None = None
    """The previous model's score on the held-out data."""
    challenger_score: float | None = None
    """This model's score on the same data."""

    @property
    def label(self) -> str:
        """Short version label for logs and results, e.g. ``v3``."""
        return f"v{self.version}"


class ModelRegistry:
    """Promoted models of one worker (or of every worker sharing the directory)."""

    def __init__(self, root: Path, default_model: Path = DEFAULT_MODEL_PATH) -> None:
        self.root = root
        """The registry directory."""
        self.default_model = default_model
        """The model in use before any promotion."""

    @property
    def pointer_path(self) -> Path:
        """``CURRENT.json``."""
        return self.root / "CURRENT.json"

    @property
    def log_path(self) -> Path:
        """``promotions.jsonl``."""
        return self.root / "promotions.jsonl"

    def pointer_stamp(self) -> tuple[int, int, int] | None:
        """Cheap identity of the pointer file (inode, size, mtime); None when absent."""
        try:
            info = os.stat(self.pointer_path)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def current(self) -> ModelPointer:
        """The pointer in force (the shipped default when nothing was promoted).

        Raises:
            ModelError: the pointer file exists but cannot be read.
        """
        try:
            raw = json.loads(self.pointer_path.read_text())
        except FileNotFoundError:
            return ModelPointer(DEFAULT_VERSION, str(self.default_model), "")
        except (OSError, ValueError) as err:
            raise ModelError(f"model pointer {self.pointer_path} is unreadable: {err}") from err
        try:
            return ModelPointer(**raw)
        except TypeError as err:
            raise ModelError(f"model pointer {self.pointer_path} is malformed: {err}") from err

    def load_current(self) -> tuple[Predictor, ModelPointer]:
        """Load the current model; falls back to the shipped default if it is refused."""
        pointer = self.current()
        try:
            return Predictor.load(Path(pointer.model_path)), pointer
        except ModelError:
            if pointer.version == DEFAULT_VERSION:
                raise
            fallback = ModelPointer(DEFAULT_VERSION, str(self.default_model), "")
            return Predictor.load(self.default_model), fallback

    def promote(
        self,
        model_path: Path,
        *,
        candidate_id: str,
        metric: str = "",
        champion_score: float | None = None,
        challenger_score: float | None = None,
        expected_version: int | None = None,
        reason: str = "",
    ) -> ModelPointer:
        """Make ``model_path`` (with its metadata beside it) the current model.

        Idempotent: promoting the same ``candidate_id`` again returns the pointer already in
        force (and logs the promotion if a crash between the pointer and the log lost it).
        ``expected_version`` refuses the promotion if another one happened since the caller
        compared against the champion (its comparison would be stale).

        Raises:
            ModelError: the model is refused by :meth:`Predictor.load`, or the champion
                changed since ``expected_version``.
        """
        with self._locked():
            current = self.current()
            if candidate_id and current.candidate_id == candidate_id:
                if not any(entry.get("decision") == "promoted"
                           and entry.get("candidate_id") == candidate_id
                           for entry in self.decisions()):
                    self.append_log({"decision": "promoted", "from_version": current.version - 1,
                                     "reason": reason, **asdict(current)})
                return current
            if expected_version is not None and current.version != expected_version:
                raise ModelError(
                    f"the current model moved from v{expected_version} to {current.label} "
                    "during the evaluation; evaluate again"
                )
            loaded = Predictor.load(model_path)  # refuse a bad model before anything moves
            # The model's digest in the name: ids that differ only in unsafe characters, or a
            # candidate id reused for another model, must never share (and reuse) a folder.
            label = _SAFE.sub("_", candidate_id) or f"v{current.version + 1}"
            name = f"{label}-{loaded.model_sha256[:12]}"
            target = self.root / "versions" / name
            if not target.exists():
                partial = target.with_name(target.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                shutil.copyfile(model_path, partial / MODEL_FILE)
                shutil.copyfile(metadata_path_for(model_path),
                                metadata_path_for(partial / MODEL_FILE))
                os.rename(partial, target)
            pointer = ModelPointer(
                version=current.version + 1,
                model_path=str(target / MODEL_FILE),
                model_sha256=loaded.model_sha256,
                candidate_id=candidate_id,
                promoted_at=time.time(),
                metric=metric,
                champion_score=champion_score,
                challenger_score=challenger_score,
            )
            _write_atomically(self.pointer_path, json.dumps(asdict(pointer), indent=1) + "\n")
            self.append_log({"decision": "promoted", "from_version": current.version,
                             "reason": reason, **asdict(pointer)})
            return pointer

    def append_log(self, entry: dict[str, Any]) -> None:
        """Append one decision to ``promotions.jsonl`` (torn-append safe: models/jsonlog.py)."""
        append_entry(self.log_path, entry, sort_keys=True)

    def decisions(self) -> list[dict[str, Any]]:
        """Every logged decision, oldest first; a torn line is skipped with a warning rather
        than hiding every later decision."""
        return read_entries(self.log_path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise promotions of workers sharing the directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file, flush it to disk, rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
