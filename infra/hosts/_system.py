"""Running the system tools the hosts are made with (``ip``, ``nft``, ``losetup``, ``mount``).

Every call has a timeout and reports the tool's own error text; a missing tool is an
:class:`~infra.errors.InfraError` that says what to install.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infra.errors import InfraError

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns`` keeps the bind mounts that name network namespaces."""

_PACKAGES = {"nft": "nftables", "ip": "iproute2", "losetup": "util-linux",
             "nsenter": "util-linux", "setpriv": "util-linux", "mkfs.ext4": "e2fsprogs",
             "mount": "mount", "umount": "mount"}


class CommandError(InfraError):
    """A system tool exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} failed ({returncode}): {stderr.strip()}")
        self.argv = list(argv)
        """The command that failed."""
        self.returncode = returncode
        """Its exit status."""
        self.stderr = stderr
        """What it printed on stderr."""


def tool(name: str) -> str:
    """Absolute path of a system tool (``sbin`` folders included, which ``PATH`` may lack)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        package = _PACKAGES.get(name, name)
        raise InfraError(f"{name} not found: install it (apt-get install {package}) or run "
                         "`make setup`")
    return found


def run(argv: Sequence[str], *, check: bool = True, input_text: str | None = None,
        timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a tool (``argv[0]`` resolved by :func:`tool`), capture its output as text.

    Raises:
        CommandError: it exited non-zero and ``check`` is set.
    """
    command = [tool(argv[0]), *argv[1:]]
    result = subprocess.run(command, capture_output=True, text=True, input=input_text,
                            timeout=timeout_s, check=False)
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stderr)
    return result


def ok(argv: Sequence[str]) -> bool:
    """Whether a tool succeeds (its output is discarded)."""
    return run(argv, check=False).returncode == 0


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    """``ip -j ARGS`` (inside ``netns`` when given), parsed; a missing device reads as ``[]``."""
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    result = run([*prefix, "-j", *args], check=False)
    if result.returncode != 0:
        if "does not exist" in result.stderr or "Cannot find device" in result.stderr:
            return []
        raise CommandError([*prefix, "-j", *args], result.returncode, result.stderr)
    return list(json.loads(result.stdout or "[]"))


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside the named network namespace (and only its network namespace).

    ``nsenter --net`` rather than ``ip netns exec``: it enters the network namespace and
    nothing else (no private mount namespace, no remount of ``/sys``), and execs in place, so
    the process keeps its pid.
    """
    return [tool("nsenter"), f"--net={NETNS_DIR / netns}", *argv]


def wait_for(condition: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.02
             ) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
