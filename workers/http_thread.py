"""A standard-library HTTP server served from a background thread (the agent's endpoint and
the codec server): bind at construction, ``start``, ``stop`` (which also closes the socket)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BackgroundHttpServer:
    """``ThreadingHTTPServer`` on ``address:port`` (bound now: a taken port fails here), one
    daemon thread per request, served by a daemon thread named ``name``."""

    def __init__(self, address: str, port: int, handler: type[BaseHTTPRequestHandler],
                 name: str) -> None:
        self._server = ThreadingHTTPServer((address, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name,
                                        daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
