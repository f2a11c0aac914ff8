"""The payload encryption keys: where they come from, their format, and how they are checked.

A key ring is one or more AES-256 keys, each with an id. The **first** key is the current one:
it encrypts every new payload. **All** keys decrypt, found by the key id each encrypted payload
carries in its metadata. That is rotation: put a new key first, keep the old ones after it for
as long as any history, schedule or pending task still holds payloads encrypted with them.

Format (the same in both places), one key per entry, ``<key id>:<base64 of 32 random bytes>``:

- ``SHADOWSHIFT_PAYLOAD_KEY_FILE``: a file with one entry per line; blank lines and lines
  starting with ``#`` are ignored. Its mode must give the group and others no access (0600 or
  0400), as ssh insists for private keys: a key anyone on the host can read protects nothing.
- ``SHADOWSHIFT_PAYLOAD_KEYS``: entries separated by commas (for secret stores that inject
  environment variables).

Set one of them, not both. ``python -m workers.payload_keys new [KEY_ID]`` prints a fresh entry;
``make setup`` writes one to ``.state/payload-keys``.

Every error here is a :class:`PayloadKeyError` (a :class:`~workers.settings.SettingsError`):
raised when a process starts, naming the variable or file and what to change, never later
in the middle of a workflow.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from workers.settings import PREFIX, Settings, SettingsError

KEY_BYTES = 32
"""AES-256: 32 bytes of key."""
KEYS_VAR = PREFIX + "PAYLOAD_KEYS"
KEY_FILE_VAR = PREFIX + "PAYLOAD_KEY_FILE"
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Allowed key ids (they travel in payload metadata and appear in messages)."""


class PayloadKeyError(SettingsError):
    """The payload keys cannot be used; the message names the source and what to change."""


@dataclass(frozen=True)
class KeyRing:
    """Keys by id, the first one current. Its ``repr`` shows ids only, never key bytes."""

    current_id: str
    """The id of the key that encrypts new payloads."""
    keys: dict[str, bytes] = field(repr=False)
    """Every key by id (the current one included); all of them decrypt."""
    source: str
    """Where the keys came from (a variable or a file), for messages."""


def parse_keys(text: str, source: str, *, separator: str = "\n") -> KeyRing:
    """A :class:`KeyRing` from ``text`` (entries split on ``separator``).

    Raises:
        PayloadKeyError: no key, a malformed entry or id, a key that is not 32 bytes, or the
            same id twice. Messages never quote key material.
    """
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(text.split(separator), start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        where = f"{source}, entry {number}" if separator == "," else f"{source}, line {number}"
        key_id, colon, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not colon or not KEY_ID.fullmatch(key_id):
            raise PayloadKeyError(
                f"{where}: expected <key id>:<base64 key>, the id being 1-64 letters, digits, "
                "'.', '_' or '-' (generate one with `python -m workers.payload_keys new`)")
        key = _decode_key(encoded.strip())
        if key is None:
            raise PayloadKeyError(f"{where}: the key of {key_id!r} is not valid base64")
        if len(key) != KEY_BYTES:
            raise PayloadKeyError(
                f"{where}: the key of {key_id!r} is {len(key)} bytes; AES-256 needs exactly "
                f"{KEY_BYTES} (generate one with `python -m workers.payload_keys new`)")
        if key_id in keys:
            raise PayloadKeyError(f"{where}: key id {key_id!r} appears twice; ids must be unique")
        keys[key_id] = key
    if not keys:
        raise PayloadKeyError(f"{source} holds no key; add a line <key id>:<base64 key>")
    return KeyRing(current_id=next(iter(keys)), keys=keys, source=source)


def _decode_key(encoded: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional; ``None`` if it is neither."""
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        alphabet = b"-_" if ("-" in encoded or "_" in encoded) else None
        return base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        return None


def read_key_file(path: Path) -> KeyRing:
    """The key ring in ``path``, after checking that only its owner can read it.

    Raises:
        PayloadKeyError: missing, unreadable, readable by group or others, or malformed.
    """
    source = f"{KEY_FILE_VAR} ({path})"
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise PayloadKeyError(f"{source} is not a regular file")
        if mode & 0o077:
            raise PayloadKeyError(
                f"{source} is readable by its group or others (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {path}`")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PayloadKeyError(
            f"{source} does not exist; create it (`python -m workers.payload_keys new > FILE`, "
            "mode 0600) or run `make setup`") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PayloadKeyError(f"{source} cannot be read: {err}") from None
    return parse_keys(text, source)


def key_ring(settings: Settings) -> KeyRing | None:
    """The key ring ``settings`` configure, or ``None`` when encryption is off.

    Raises:
        PayloadKeyError: both sources set, a bad key, or ``SHADOWSHIFT_PAYLOAD_ENCRYPTION`` is
            ``required`` and no key is configured.
    """
    if settings.payload_keys and settings.payload_key_file is not None:
        raise PayloadKeyError(f"both {KEYS_VAR} and {KEY_FILE_VAR} are set; set only one")
    if settings.payload_keys:
        return parse_keys(settings.payload_keys, KEYS_VAR, separator=",")
    if settings.payload_key_file is not None:
        return read_key_file(settings.payload_key_file)
    if settings.payload_encryption == "required":
        raise PayloadKeyError(
            f"{PREFIX}PAYLOAD_ENCRYPTION=required but no key is configured: set "
            f"{KEY_FILE_VAR} (or {KEYS_VAR})")
    return None


def new_entry(key_id: str | None = None) -> str:
    """A fresh ``<key id>:<base64 key>`` entry (id ``k<Unix time>`` unless given)."""
    key_id = key_id or f"k{int(time.time())}"
    if not KEY_ID.fullmatch(key_id):
        raise PayloadKeyError(f"key id {key_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def main(argv: list[str]) -> int:
    """``python -m workers.payload_keys new [KEY_ID]``: print a fresh entry."""
    if not argv or argv[0] != "new" or len(argv) > 2:
        print("usage: python -m workers.payload_keys new [KEY_ID]", file=sys.stderr)
        return 2
    try:
        print(new_entry(argv[1] if len(argv) == 2 else None))
    except PayloadKeyError as err:
        print(f"payload_keys: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
