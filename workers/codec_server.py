"""A Temporal codec server: ``POST /encode`` and ``POST /decode`` for the Web UI and CLI.

With payloads encrypted (:mod:`workers.payload_codec`), the Web UI and ``temporal workflow
show`` see ciphertext. Pointed at this endpoint (the UI's "codec server" setting,
``temporal --codec-endpoint URL``) they send it the payloads and show what comes back; the key
never leaves this process. Who may read decoded payloads is who may reach this endpoint:

- it binds to ``127.0.0.1`` by default (an operator's own machine or an SSH tunnel);
- with a bearer token (``--token-file``), every request without ``Authorization: Bearer
  <token>`` is refused with 401; binding to any non-loopback address requires one;
- CORS answers only the origins given with ``--cors-origin`` (the Web UI's URL), so a page on
  another site cannot have an operator's browser decode for it.

Protocol (Temporal's): the body and the answer are the proto3 JSON of
``temporal.api.common.v1.Payloads``, ``{"payloads": [{"metadata": {...}, "data": "..."}]}``
with base64 bytes; ``X-Namespace`` names the namespace (one key ring serves all). Errors are
JSON ``{"error": "..."}`` with 400 (bad body, unknown key, tampered payload), 401, 404, 413.

Why the standard library's ``ThreadingHTTPServer``: two JSON routes need no framework, and the
agent's endpoint (:mod:`workers.agent_http`) already works this way.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.exceptions import ApplicationError

from workers.http_thread import BackgroundHttpServer
from workers.payload_codec import EncryptionCodec

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request accepted (a history page's payloads; Temporal caps one payload at 2 MB)."""
DEFAULT_PORT = 8234
"""Next to the dev server's Web UI (8233)."""
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"


class CodecServer(BackgroundHttpServer):
    """The endpoint on ``address:port`` (0 = any free port), served from a thread.

    Args:
        codec: the codec with the keys (it must have a key ring).
        address: where to listen; loopback unless a token is given.
        port: the port.
        token: bearer token every request must carry; ``None`` = no authentication.
        cors_origins: origins (``scheme://host:port``) allowed to call from a browser.

    Raises:
        ValueError: no keys, or a non-loopback address without a token.
    """

    def __init__(self, codec: EncryptionCodec, *, address: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, token: str | None = None,
                 cors_origins: Sequence[str] = ()) -> None:
        if codec.ring is None:
            raise ValueError("no payload keys are configured, so there is nothing to decode "
                             "with: set SHADOWSHIFT_PAYLOAD_KEY_FILE")
        if token is None and not is_loopback(address):
            raise ValueError(f"listening on {address} (not loopback) needs a bearer token: "
                             "give --token-file, or listen on 127.0.0.1")
        self.codec = codec
        handler = _handler_for(codec, token, frozenset(o.rstrip("/") for o in cors_origins))
        super().__init__(address, port, handler, "codec-server")

    @property
    def url(self) -> str:
        """``http://host:port``, what ``--codec-endpoint`` takes."""
        host, port = self._server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the CLI's mode)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()


def is_loopback(address: str) -> bool:
    """Whether ``address`` is a loopback address or ``localhost``."""
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def transform(body: bytes, convert: Callable[[Payload], Payload]) -> tuple[int, dict[str, Any]]:
    """Apply ``convert`` to every payload of a ``Payloads`` JSON body; (status, answer)."""
    try:
        payloads = json_format.Parse(body.decode("utf-8"), Payloads())
    except (UnicodeDecodeError, json_format.ParseError) as err:
        return HTTPStatus.BAD_REQUEST, {
            "error": f'the body must be JSON {{"payloads": [...]}} of Temporal payloads: {err}'}
    try:
        converted = Payloads(payloads=[convert(p) for p in payloads.payloads])
    except ApplicationError as err:  # an unknown key id or a tampered payload
        return HTTPStatus.BAD_REQUEST, {"error": str(err)}
    document: dict[str, Any] = json_format.MessageToDict(converted)
    document.setdefault("payloads", [])
    return HTTPStatus.OK, document


def _handler_for(codec: EncryptionCodec, token: str | None,
                 origins: frozenset[str]) -> type[BaseHTTPRequestHandler]:
    routes = {"/encode": codec.encrypt, "/decode": codec.decrypt}
    expected = f"Bearer {token}".encode() if token is not None else None

    class Handler(BaseHTTPRequestHandler):
        """``/encode`` and ``/decode``, CORS pre-flights, every answer JSON."""

        protocol_version = "HTTP/1.1"
        timeout = 30

        def do_OPTIONS(self) -> None:
            """A browser's pre-flight: which origin, methods and headers may call."""
            self.send_response(HTTPStatus.NO_CONTENT)
            self._cors_headers()
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            """``/encode`` or ``/decode`` (any prefix before them, as the UI may add one)."""
            body = self._body()
            if body is None:
                return
            path = self.path.split("?", 1)[0].rstrip("/")
            route = next((r for r in routes if path.endswith(r)), None)
            if route is None:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {path}; POST /encode "
                                                   "or /decode"})
            elif expected is not None and not hmac.compare_digest(
                    self.headers.get("Authorization", "").encode(), expected):
                self._reply(HTTPStatus.UNAUTHORIZED,
                            {"error": "missing or wrong Authorization: Bearer <token>"})
            else:
                self._reply(*transform(body, routes[route]))

        def _body(self) -> bytes | None:
            """The request body, read whole so the connection stays usable; ``None`` (and the
            connection closed after an error answer) when its length is missing or too big."""
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self.close_connection = True
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else
                            HTTPStatus.BAD_REQUEST,
                            {"error": f"Content-Length must be 0..{MAX_BODY_BYTES}"})
                return None
            return self.rfile.read(length)

        def _cors_headers(self) -> None:
            origin = self.headers.get("Origin", "").rstrip("/")
            if origin and origin in origins:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Vary", "Origin")

        def _reply(self, status: int, document: dict[str, Any]) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self._cors_headers()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Access lines at DEBUG, without bodies (they are plaintext payloads)."""
            log.debug("%s - %s", self.address_string(), format % args)

    return Handler
