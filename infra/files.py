"""Writing a file whole, with its mode from the start: the one way ShadowShift writes keys,
certificates and passfiles (a key is never readable by others, not even for a moment, and a
crash leaves the old file or none, never half of one)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def write_whole(path: Path, data: bytes, mode: int, *, owner: str | None = None) -> None:
    """Write ``data`` to ``path`` through a ``.partial`` sibling created with ``mode`` and
    renamed over it; ``owner``: the OS user to give it to first (``None``: ourselves)."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
    finally:
        os.close(fd)
    partial.replace(path)
