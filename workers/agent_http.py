"""The agent's HTTP endpoint: lease renewal, health and metrics, on the host's address.

=======  ==================  ==============================================================
method   path                answer
=======  ==================  ==============================================================
POST     ``/lease/<node>``   renew (and arm) the node's lease; 200, or 409 when the lease was
                             already lost (a renewal never revives a dead lease), 404 unknown
DELETE   ``/lease/<node>``   disarm it (the node is no longer protected); 200, 404 unknown
GET      ``/health``         agent version, host, identity, each server's ``LocalView``
GET      ``/metrics/<node>`` one ``MetricSample`` of the node as JSON, with
                             ``data_free_bytes`` (what its OS user may still write on the
                             data directory's filesystem); 404 unknown
=======  ==================  ==============================================================

``POST /lease`` takes an optional JSON body ``{"observed_at": <Unix time>}``: when the probe
that justifies the renewal happened, so a renewal delayed on the way buys no extra time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from activities.agent_catalog import ServerCatalog
from activities.agent_lease import LeaseKeeper, UnknownNodeError
from activities.agent_metrics import AgentMetrics
from contracts.version import VERSION
from workers.http_thread import BackgroundHttpServer

log = logging.getLogger(__name__)

HEALTH_PROBE_TIMEOUT_S = 0.3
"""Deadline of each server's probe in ``GET /health``."""
_LEASE = re.compile(r"^/lease/([A-Za-z0-9][A-Za-z0-9_.-]{0,62})\Z")
_METRICS = re.compile(r"^/metrics/([A-Za-z0-9][A-Za-z0-9_.-]{0,62})\Z")
ROUTES = "POST /lease/<node>, DELETE /lease/<node>, GET /health, GET /metrics/<node>"

Answer = tuple[int, dict[str, Any]]


class AgentHttpApi:
    """What the routes do, apart from HTTP (a test may call it directly)."""

    def __init__(self, *, host: str, address: str, identity: str, catalog: ServerCatalog,
                 keeper: LeaseKeeper, metrics: AgentMetrics) -> None:
        self.host = host
        self.address = address
        self.identity = identity
        self.catalog = catalog
        self.keeper = keeper
        self.metrics = metrics

    def renew(self, node: str, body: bytes) -> Answer:
        """``POST /lease/<node>``."""
        observed_at = None
        if body.strip():
            try:
                document = json.loads(body)
                if document.get("observed_at") is not None:
                    observed_at = float(document["observed_at"])
            except (ValueError, TypeError, AttributeError):
                return HTTPStatus.BAD_REQUEST, {
                    "error": 'the body must be empty or {"observed_at": <Unix time>}'}
        try:
            renewal = self.keeper.renew(node, observed_at)
        except UnknownNodeError:
            return self._unknown(node)
        status = HTTPStatus.OK if renewal.accepted else HTTPStatus.CONFLICT
        return status, {"node": node, **dataclasses.asdict(renewal)}

    def release(self, node: str) -> Answer:
        """``DELETE /lease/<node>``."""
        if self.catalog.find(node) is None:
            return self._unknown(node)
        return HTTPStatus.OK, {"node": node, "was_armed": self.keeper.disarm(node)}

    def health(self) -> Answer:
        """``GET /health``."""
        servers = []
        for node in self.catalog.nodes():
            server = self.catalog.find(node)
            if server is None:
                continue
            view = dataclasses.asdict(server.local_view(HEALTH_PROBE_TIMEOUT_S))
            view["port"] = server.port
            view["lease_remaining_s"] = self.keeper.remaining(node)
            servers.append(view)
        return HTTPStatus.OK, {"host": self.host, "version": VERSION, "address": self.address,
                               "identity": self.identity, "servers": servers}

    def sample(self, node: str) -> Answer:
        """``GET /metrics/<node>``."""
        server = self.catalog.find(node)
        if server is None:
            return self._unknown(node)
        answers = server.local_view(HEALTH_PROBE_TIMEOUT_S).answers
        body = dataclasses.asdict(self.metrics.sample(server, answers))
        try:  # a full disk is a failure of its own (infra.hosts.observer)
            body["data_free_bytes"] = shutil.disk_usage(server.data_dir).free
        except OSError:
            body["data_free_bytes"] = None
        return HTTPStatus.OK, body

    def _unknown(self, node: str) -> Answer:
        return HTTPStatus.NOT_FOUND, {"error": f"no server {node!r} on host {self.host}"}


class AgentHttpServer(BackgroundHttpServer):
    """The endpoint on ``address:port``, served from a thread.

    Why the standard library's ``ThreadingHTTPServer``: three tiny JSON routes need no
    framework and no dependency; one thread per request means a slow ``/metrics`` (a hung
    server's database connection waits out its timeout) never delays a lease renewal, which
    only takes a lock and compares two numbers. HTTP/1.1 keep-alive lets the control worker
    renew four times a second over one connection.
    """

    def __init__(self, api: AgentHttpApi, address: str, port: int) -> None:
        super().__init__(address, port, _handler_for(api), "agent-http")


def _handler_for(api: AgentHttpApi) -> type[BaseHTTPRequestHandler]:
    routes: dict[tuple[str, re.Pattern[str] | str], Callable[..., Answer]] = {
        ("POST", _LEASE): api.renew,
        ("DELETE", _LEASE): api.release,
        ("GET", "/health"): api.health,
        ("GET", _METRICS): api.sample,
    }

    class Handler(BaseHTTPRequestHandler):
        """Routes each request to ``api``; every answer is JSON."""

        protocol_version = "HTTP/1.1"
        timeout = 30  # a kept-alive connection left idle frees its thread after this

        def do_GET(self) -> None:
            """``GET`` routes."""
            self._route("GET")

        def do_POST(self) -> None:
            """``POST`` routes."""
            self._route("POST")

        def do_DELETE(self) -> None:
            """``DELETE`` routes."""
            self._route("DELETE")

        def _route(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            allowed = False
            for (verb, pattern), action in routes.items():
                match = pattern.match(path) if isinstance(pattern, re.Pattern) else (
                    path == pattern)
                if not match:
                    continue
                allowed = True
                if verb != method:
                    continue
                args: list[Any] = list(match.groups()) if isinstance(match, re.Match) else []
                if method == "POST":
                    args.append(body)
                try:
                    self._reply(*action(*args))
                except Exception as err:  # one broken request must not kill the endpoint
                    log.exception("%s %s failed.", method, path)
                    self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(err)})
                return
            if allowed:
                self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"routes: {ROUTES}"})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {path}; routes: {ROUTES}"})

        def _reply(self, status: int, document: dict[str, Any]) -> None:
            payload = json.dumps(document, sort_keys=True).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Access lines at DEBUG: four renewals a second would drown the log."""
            log.debug("%s - %s", self.address_string(), format % args)

    return Handler
