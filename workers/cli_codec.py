"""``shadowshift codec-server``: decode encrypted payloads for the Web UI and ``temporal`` CLI.

It reads the payload keys as every worker does (``SHADOWSHIFT_PAYLOAD_KEY_FILE`` or
``SHADOWSHIFT_PAYLOAD_KEYS``) and serves Temporal's codec protocol
(:mod:`workers.codec_server`) until interrupted::

    shadowshift codec-server --cors-origin http://localhost:8233
    temporal workflow show -w protect-db1 --codec-endpoint http://127.0.0.1:8234

Exit code 2 for unusable keys, a missing or too open token file, or an address it cannot use.
"""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path

from workers.cli_base import OK, Subcommand, UsageError
from workers.settings import SettingsError, load_settings


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:8234", metavar="HOST:PORT",
                        help="where to listen (default: 127.0.0.1:8234; any other than "
                        "loopback needs --token-file)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="URL",
                        help="a Web UI origin allowed to call from a browser, e.g. "
                        "http://localhost:8233 (repeat for several)")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="require 'Authorization: Bearer <token>' with the token in FILE "
                        "(mode 0600); the UI and `temporal --codec-auth` send it")


def _listen(raw: str) -> tuple[str, int]:
    host, colon, port = raw.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {raw!r} is not HOST:PORT (for example 127.0.0.1:8234)")
    return host, int(port)


def read_token(path: Path) -> str:
    """The bearer token in ``path``, which only its owner may read.

    Raises:
        UsageError: missing, readable by group or others, or empty.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--token-file {path} cannot be read: {err}") from None
    if mode & 0o077:
        raise UsageError(f"--token-file {path} is readable by its group or others (mode "
                         f"{mode:o}); run `chmod 600 {path}`")
    if not token or any(c.isspace() for c in token):
        raise UsageError(f"--token-file {path}: expected one token without spaces")
    return token


def _run(args: argparse.Namespace) -> int:
    from workers.codec_server import CodecServer
    from workers.payload_codec import EncryptionCodec
    from workers.payload_keys import key_ring

    host, port = _listen(args.listen)
    token = read_token(args.token_file) if args.token_file else None
    try:
        ring = key_ring(load_settings(worker=False))
    except SettingsError as err:
        raise UsageError(str(err)) from err
    try:
        server = CodecServer(EncryptionCodec(ring), address=host, port=port, token=token,
                             cors_origins=args.cors_origin)
    except (ValueError, OSError) as err:
        raise UsageError(str(err)) from err
    assert ring is not None  # CodecServer refuses a codec without keys
    print(f"Codec server on {server.url} (keys {', '.join(ring.keys)} from {ring.source}; "
          f"{'bearer token required' if token else 'no authentication'}); Ctrl-C stops it.",
          file=sys.stderr, flush=True)
    server.serve_forever()
    return OK


SUBCOMMANDS = [
    Subcommand("codec-server", "serve Temporal's codec protocol so the Web UI and the temporal "
               "CLI can show encrypted payloads", _add_arguments, _run),
]
