"""Look for a planted secret wherever ShadowShift leaves text: files, captured output, JSON.

A hit is reported with where it was found. Besides the plain bytes, a reader who would find
the secret with a little effort finds it here too: base64 tokens (Temporal payloads and
Pulumi's plaintext outputs are base64 in JSON) are decoded and searched, and so are their
JSON strings once more (a payload's JSON escapes nothing in a password of ours).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from pathlib import Path

_BASE64 = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def readable_forms(data: bytes) -> Iterable[bytes]:
    """``data`` and the decoding of every base64-looking token in it (standard and URL-safe)."""
    yield data
    for token in _BASE64.findall(data):
        padded = token + b"=" * (-len(token) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                yield decode(padded)
            except (binascii.Error, ValueError):
                continue


def contains(secret: str, data: bytes) -> bool:
    """Whether ``secret`` is in ``data`` as it is or base64-encoded inside it."""
    needle = secret.encode()
    return any(needle in form for form in readable_forms(data))


def scan_files(secret: str, roots: Iterable[Path], *, skip: Iterable[Path] = (),
               skip_names: Iterable[str] = ()) -> list[str]:
    """Files under ``roots`` (or the files themselves) that hold ``secret``; ``skip``: folders
    or files left out on purpose (with the reason said by the caller), ``skip_names``: file
    names left out wherever they are."""
    skipped = [path.resolve() for path in skip]
    names = set(skip_names)
    hits = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            resolved = path.resolve()
            if path.name in names or any(resolved.is_relative_to(s) for s in skipped):
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue  # a socket, a file removed meanwhile
            if contains(secret, data):
                hits.append(f"file {path}")
    return hits


def scan_texts(secret: str, texts: dict[str, str | bytes]) -> list[str]:
    """Names of the ``texts`` (captured logs, serialised histories, spans) holding ``secret``."""
    return [f"{name}" for name, text in texts.items()
            if contains(secret, text.encode() if isinstance(text, str) else text)]
