"""A small, typed HTTPS client for the Kubernetes API.

The official ``kubernetes`` client is not among our dependencies, and what we need is a handful
of verbs on JSON objects (get, create, server-side apply, merge patch, delete) plus polling for a
condition. The standard library's ``http.client`` with a TLS context that trusts the cluster CA
and presents a client certificate does all of it, with nothing to install.

Errors come back as :class:`KubeApiError` (an :class:`~infra.errors.InfraError`) carrying the
HTTP status and the API's ``reason`` (``NotFound``, ``AlreadyExists``, ``Conflict``...), so
callers branch on the reason, not on message text.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from infra.errors import InfraError

T = TypeVar("T")
KubeObject = dict[str, Any]

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(InfraError):
    """The API server refused or failed a request."""

    def __init__(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        """HTTP status (404, 409, 422...)."""
        self.reason = reason
        """The API's machine-readable reason (``NotFound``, ``AlreadyExists``, ``Invalid``)."""


@dataclass(frozen=True)
class KubeCredentials:
    """How to reach and authenticate to an API server with a client certificate."""

    server: str
    """``https://host:port``."""
    ca_file: Path
    """PEM bundle that signed the server's certificate."""
    cert_file: Path
    """PEM client certificate."""
    key_file: Path
    """Its private key."""


def resource_path(api_version: str, plural: str, *, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    """The URL path of a collection or an object: ``("v1", "pods", namespace="ns")`` gives
    ``/api/v1/namespaces/ns/pods``; groups go under ``/apis``."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class KubeApi:
    """Blocking client for one API server. Each call opens its own connection, so one client
    may be shared between threads."""

    def __init__(self, credentials: KubeCredentials, *, timeout_s: float = 10.0) -> None:
        url = urllib.parse.urlsplit(credentials.server)
        if url.scheme != "https" or not url.hostname or not url.port:
            raise ValueError(f"server must be https://host:port, not {credentials.server!r}")
        self._host, self._port = url.hostname, url.port
        self._timeout_s = timeout_s
        self._tls = ssl.create_default_context(cafile=str(credentials.ca_file))
        self._tls.load_cert_chain(str(credentials.cert_file), str(credentials.key_file))

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                content_type: str = "application/json",
                query: Mapping[str, str] | None = None) -> KubeObject:
        """Send one request and return the decoded JSON answer (``{}`` for an empty one).

        Raises:
            KubeApiError: any status outside 2xx.
            OSError: the server could not be reached.
        """
        target = path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPSConnection(self._host, self._port, context=self._tls,
                                           timeout=self._timeout_s)
        try:
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        answer = _decode(raw)
        if not 200 <= response.status < 300:
            raise KubeApiError(method, path, response.status,
                               str(answer.get("reason", response.reason)),
                               str(answer.get("message", raw[:200].decode(errors="replace"))))
        return answer

    def get(self, path: str, *, query: Mapping[str, str] | None = None) -> KubeObject:
        """The object or list at ``path``."""
        return self.request("GET", path, query=query)

    def find(self, path: str) -> KubeObject | None:
        """The object at ``path``, or ``None`` when it does not exist."""
        try:
            return self.get(path)
        except KubeApiError as err:
            if err.status == 404:
                return None
            raise

    def create(self, collection: str, obj: Mapping[str, Any]) -> KubeObject:
        """Create ``obj`` in ``collection`` (``AlreadyExists`` is an error)."""
        return self.request("POST", collection, obj)

    def apply(self, path: str, obj: Mapping[str, Any], *, field_manager: str) -> KubeObject:
        """Server-side apply ``obj`` at its object ``path``: creates or converges it, owning
        the fields it names (idempotent, so safe to repeat after a crash)."""
        return self.request("PATCH", path, obj, content_type=APPLY_PATCH,
                            query={"fieldManager": field_manager, "force": "true"})

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> KubeObject:
        """JSON merge patch of the object at ``path``."""
        return self.request("PATCH", path, patch, content_type=MERGE_PATCH)

    def delete(self, path: str) -> bool:
        """Delete the object at ``path``; ``False`` when it was already gone."""
        try:
            self.request("DELETE", path)
        except KubeApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    def healthy(self, endpoint: str = "/readyz") -> bool:
        """Whether ``endpoint`` (``/readyz``, ``/livez``) answers ``ok``; ``False`` while the
        server is unreachable or still starting."""
        try:
            self.request("GET", endpoint)
        except (KubeApiError, OSError, http.client.HTTPException):
            return False
        return True


def poll_until(condition: Callable[[], T | None], *, timeout_s: float, what: str,
               interval_s: float = 0.1) -> T:
    """Call ``condition`` until it returns something other than ``None`` or ``False``, and
    return that; bounded, so a condition that never comes fails loudly instead of hanging.

    Raises:
        TimeoutError: ``timeout_s`` passed; the message says ``what`` was awaited.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s:g} s")
        time.sleep(interval_s)


def _decode(raw: bytes) -> KubeObject:
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {"items": decoded}
