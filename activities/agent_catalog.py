"""The servers under one agent's data root, found by node name (``server.json``), with one
lock per node for the activities that change a server."""

from __future__ import annotations

import json
import logging
import threading
import time

from activities.agent_server import (
    NODE_NAME,
    SERVER_FILE,
    STOPPED_FILE,
    AgentConfig,
    ManagedServer,
)
from contracts.agent import ServerRef
from infra.errors import InvalidRequestError

log = logging.getLogger(__name__)


class ServerCatalog:
    """The servers under one data root, by node name, with one lock per node for the
    activities that change a server."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._retry_at: dict[str, tuple[float, float]] = {}
        """Node -> (next start attempt, wait after it) for standbys that failed to start."""

    def server(self, ref: ServerRef) -> ManagedServer:
        """The server a request names, validated.

        Raises:
            InvalidRequestError: a node name that is no folder name, a port out of range, or a
                node that runs on another port than the request says.
        """
        if not NODE_NAME.match(ref.node):
            raise InvalidRequestError(
                f"node name {ref.node!r}: use letters, digits, '.', '_' or '-' (1-63 "
                "characters, not starting with a punctuation mark)")
        if not 1024 <= ref.port <= 65535:
            raise InvalidRequestError(f"port {ref.port} of {ref.node}: use 1024..65535")
        known = self.find(ref.node)
        if known is not None and known.port != ref.port and known.running():
            raise InvalidRequestError(
                f"{ref.node} runs on port {known.port}, not {ref.port}: stop it first or ask "
                f"for port {known.port}")
        server = ManagedServer(self.config, ref.node, ref.port)
        server.check_socket_path()
        return server

    def find(self, node: str) -> ManagedServer | None:
        """The server recorded under ``node``, if any."""
        if not NODE_NAME.match(node):
            return None
        try:
            raw = json.loads((self.config.data_root / node / SERVER_FILE).read_text())
            return ManagedServer(self.config, node, int(raw["port"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def nodes(self) -> list[str]:
        """Every recorded node, sorted."""
        try:
            homes = sorted(self.config.data_root.iterdir())
        except FileNotFoundError:
            return []
        return [home.name for home in homes if (home / SERVER_FILE).exists()]

    def start_standbys(self, now: float | None = None) -> list[str]:
        """Start every standby that is down, as a host's init system restarts its database
        (the host rebooted, the agent's host crashed with its servers, the standby stopped on
        a full disk); returns the nodes started. The agent runs it at start and then every
        few seconds (``workers.agent``).

        Never a primary, a fenced server or one ``stop_server`` stopped: a primary that was
        down may have been failed over meanwhile, and only its protection's recovery (rewind
        or a fresh copy) may bring it back; a standby cannot take a write, so starting it is
        always safe, and it streams from its primary again (tier 1's synchronous mode is then
        restored). A start that fails is logged and tried again later, at doubling waits up
        to a minute; meanwhile the protection sees that standby as lost.
        """
        now = time.monotonic() if now is None else now
        started = []
        for node in self.nodes():
            server = self.find(node)
            if (server is None or not server.is_cluster() or not server.has_standby_signal()
                    or server.fence_record() is not None
                    or (server.home / STOPPED_FILE).exists() or server.running()
                    or now < self._retry_at.get(node, (0.0, 0.0))[0]):
                continue
            lock = self.lock(node)
            if not lock.acquire(blocking=False):
                continue  # an activity is changing it (a copy, a rewind): not ours now
            try:
                if server.running():
                    continue
                server.start()
            except Exception as err:  # one server's trouble must not stop the others
                wait = min(2 * self._retry_at.get(node, (0.0, 2.5))[1], 60.0)
                self._retry_at[node] = (now + wait, wait)
                log.warning("Could not start standby %s (again in %.0f s): %s", node, wait,
                            err)
                continue
            finally:
                lock.release()
            self._retry_at.pop(node, None)
            log.info("Started standby %s (it was down).", node)
            started.append(node)
        return started

    def lock(self, node: str) -> threading.Lock:
        """The lock that serialises changes to ``node``."""
        with self._guard:
            return self._locks.setdefault(node, threading.Lock())
