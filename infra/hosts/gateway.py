"""A TCP gateway that makes a Temporal dev server reachable from namespace hosts.

Agents in the hosts reach Temporal on the fleet's TEMPORAL address (``.3``), but the dev
server cannot listen there: its ``--ip`` moves only its frontend, and its own services keep
dialing each other on 127.0.0.1 and fail. So the dev server stays on loopback and this
gateway — an HAProxy process of its own, in TCP mode — listens on the TEMPORAL address and
forwards to it. HAProxy because a proxy is exactly what it is (no hand-written relay), and
because the router already depends on it. A production Temporal cluster listens on a routable
address and needs none of this.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError

_CONFIG = """global
    maxconn 2048
defaults
    mode tcp
    timeout connect 2s
    # gRPC long polls last up to a minute; keep idle streams open well past that
    timeout client 10m
    timeout server 10m
frontend temporal
    bind {listen_host}:{listen_port}
    default_backend temporal
backend temporal
    server dev {target_host}:{target_port}
"""


@dataclass(frozen=True)
class TemporalGateway:
    """HAProxy forwarding ``listen`` to ``target`` (a dev server on loopback)."""

    directory: Path
    """Folder of its config and pid file."""
    listen_host: str
    """The fleet's TEMPORAL address."""
    listen_port: int
    """Port agents dial."""
    target_host: str
    """Where the dev server listens (127.0.0.1)."""
    target_port: int
    """The dev server's frontend port."""

    @property
    def address(self) -> str:
        """``host:port`` agents use as their Temporal address."""
        return f"{self.listen_host}:{self.listen_port}"

    @property
    def _pid_file(self) -> Path:
        return self.directory / "gateway.pid"

    def start(self) -> None:
        """Start it (a running one is left alone) and wait until it listens.

        Raises:
            InfraError: HAProxy refused the config or did not come up.
        """
        if self.running():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "gateway.cfg"
        config.write_text(_CONFIG.format(
            listen_host=self.listen_host, listen_port=self.listen_port,
            target_host=self.target_host, target_port=self.target_port))
        done = subprocess.run(["haproxy", "-f", str(config), "-D", "-p", str(self._pid_file)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise InfraError(f"the Temporal gateway did not start: {done.stderr.strip()}")
        deadline = time.monotonic() + 10
        while not self.running():
            if time.monotonic() > deadline:
                raise InfraError("the Temporal gateway did not come up within 10 s")
            time.sleep(0.05)

    def running(self) -> bool:
        """Whether its process is alive."""
        pid = self._pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        """Stop it (idempotent)."""
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):  # gone already
                os.kill(pid, signal.SIGTERM)
        self._pid_file.unlink(missing_ok=True)

    def _pid(self) -> int | None:
        try:
            return int(self._pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
