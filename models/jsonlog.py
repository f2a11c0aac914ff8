"""Append-only JSON-lines logs: the model registry's decisions, the cutover events.

A worker can die in the middle of an append, leaving a last line without its newline (or
half a record). Readers skip such a line with a warning instead of failing on it, and the
next append starts on a line of its own, so one crash never hides the records after it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)


def append_entry(path: Path, entry: dict[str, Any], *, sort_keys: bool = False) -> None:
    """Append ``entry`` as one line, after a newline if the last append was torn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=sort_keys) + "\n"
    with path.open("a+b") as log_file:  # appends go to the end whatever the seek
        size = log_file.seek(0, os.SEEK_END)
        if size:
            log_file.seek(size - 1)
            if log_file.read(1) != b"\n":
                line = "\n" + line
        log_file.write(line.encode())


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Every entry, oldest first (none if the file does not exist); a line that is not a JSON
    object is skipped with a warning."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            _log.warning("%s line %d is not a JSON object (torn write?); skipped: %.80s",
                         path, number, line)
            continue
        entries.append(entry)
    return entries
