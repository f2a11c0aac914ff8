"""A host's cgroup v1 groups: ``/sys/fs/cgroup/<controller>/shadowshift/<fleet>/<host>``.

The freezer holds the host's processes still (the "hung host"), the memory and cpu groups
carry its optional limits, the blkio group its disk throttle. Every process of a host is in
all four (``infra.hosts.host`` puts it there before it execs), the freezer first, so the
freezer's ``cgroup.procs`` is the host's process list.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from infra.hosts._system import wait_for

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
"""Where the cgroup v1 controllers are mounted."""
CONTROLLERS = ("freezer", "memory", "cpu", "blkio")
"""The controllers a host has a group in, in the order a process joins them (freezer first,
so a host being killed cannot gain a process that escapes the freeze)."""
PARENT = "shadowshift"
"""Every host's group lives under ``<controller>/shadowshift/<fleet>/``."""
UNLIMITED = -1
"""What ``memory.limit_in_bytes`` takes for "no limit"."""
DEFAULT_CPU_SHARES = 1024
"""cgroup v1's default ``cpu.shares``."""


@dataclass(frozen=True)
class HostCgroups:
    """The cgroup directories of one host."""

    fleet: str
    """The fleet's name."""
    host: str
    """The host's name."""

    def path(self, controller: str) -> Path:
        """The host's group in ``controller``."""
        return CGROUP_ROOT / controller / PARENT / self.fleet / self.host

    @property
    def paths(self) -> dict[str, Path]:
        """Controller -> the host's group, in :data:`CONTROLLERS` order."""
        return {controller: self.path(controller) for controller in CONTROLLERS}

    @property
    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a new process writes its pid into, in join order."""
        return [path / "cgroup.procs" for path in self.paths.values()]

    def exists(self) -> bool:
        """Whether every group exists."""
        return all(path.is_dir() for path in self.paths.values())

    def ensure(self) -> None:
        """Create the missing groups (parents included); existing ones are kept."""
        missing = [c for c in CONTROLLERS if not (CGROUP_ROOT / c).is_dir()]
        if missing:
            raise InfraError(f"cgroup v1 controllers {missing} are not mounted under "
                             f"{CGROUP_ROOT}: namespace hosts need cgroup v1")
        for path in self.paths.values():
            path.mkdir(parents=True, exist_ok=True)

    # -- limits ----------------------------------------------------------------------------

    def set_limits(self, *, memory_mib: int | None, cpu_shares: int | None) -> None:
        """Set (or lift, for ``None``) the memory limit and the CPU weight."""
        limit = UNLIMITED if memory_mib is None else memory_mib * 2**20
        _write(self.path("memory") / "memory.limit_in_bytes", str(limit))
        shares = DEFAULT_CPU_SHARES if cpu_shares is None else cpu_shares
        _write(self.path("cpu") / "cpu.shares", str(shares))

    def limits(self) -> tuple[int | None, int | None]:
        """``(memory_mib, cpu_shares)`` as the kernel has them (``None`` for the defaults)."""
        limit = int(_read(self.path("memory") / "memory.limit_in_bytes"))
        memory_mib = None if limit >= 2**62 else limit // 2**20  # "unlimited" reads as ~2^63
        shares = int(_read(self.path("cpu") / "cpu.shares"))
        return memory_mib, None if shares == DEFAULT_CPU_SHARES else shares

    def throttle(self, device: str, *, write_bps: int, read_bps: int | None) -> None:
        """Limit the group's I/O on ``device`` (``major:minor``); 0 or ``None`` lifts a limit."""
        blkio = self.path("blkio")
        _write(blkio / "blkio.throttle.write_bps_device", f"{device} {write_bps}")
        _write(blkio / "blkio.throttle.read_bps_device", f"{device} {read_bps or 0}")

    def throttled(self) -> dict[str, str]:
        """The group's throttle rules, e.g. ``{"write": "7:3 1048576"}``."""
        blkio = self.path("blkio")
        rules = {kind: _read(blkio / f"blkio.throttle.{kind}_bps_device").strip()
                 for kind in ("write", "read")}
        return {kind: rule for kind, rule in rules.items() if rule}

    def unthrottle(self) -> None:
        """Lift every disk throttle of the group."""
        for kind, rule in self.throttled().items():
            for line in rule.splitlines():
                device = line.split()[0]
                _write(self.path("blkio") / f"blkio.throttle.{kind}_bps_device", f"{device} 0")

    # -- processes -------------------------------------------------------------------------

    def pids(self) -> set[int]:
        """Every process in any of the host's groups."""
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(FileNotFoundError):
                found.update(int(pid) for pid in procs.read_text().split())
        return found

    def freezer_state(self) -> str:
        """``THAWED``, ``FREEZING`` or ``FROZEN``."""
        return _read(self.path("freezer") / "freezer.state").strip()

    def freeze(self, *, timeout_s: float = 5.0) -> bool:
        """Freeze every process of the group; whether they all froze within ``timeout_s``
        (a process in uninterruptible sleep, e.g. on throttled I/O, freezes when it wakes)."""
        _write(self.path("freezer") / "freezer.state", "FROZEN")
        return wait_for(lambda: self.freezer_state() == "FROZEN", timeout_s=timeout_s)

    def thaw(self, *, timeout_s: float = 5.0) -> bool:
        """Let the group's processes run again; whether the freezer says so within
        ``timeout_s``."""
        _write(self.path("freezer") / "freezer.state", "THAWED")
        return wait_for(lambda: self.freezer_state() == "THAWED", timeout_s=timeout_s)

    def kill_all(self, *, timeout_s: float = 15.0) -> int:
        """SIGKILL every process of the host and return once none is left; how many died.

        Each round freezes the group (nothing forks between listing and killing), kills
        what is listed, and thaws (a frozen process dies when it thaws). A process in
        uninterruptible sleep dies when its I/O completes.

        Raises:
            InfraError: processes survived ``timeout_s``.
        """
        if not self.path("freezer").is_dir():
            return 0
        killed: set[int] = set()
        deadline_ok = wait_for(lambda: self._kill_round(killed), timeout_s=timeout_s,
                               interval_s=0.05)
        if not deadline_ok:
            raise InfraError(f"processes {sorted(self.pids())} of host {self.host} survived "
                             f"SIGKILL for {timeout_s:.0f} s")
        return len(killed)

    def _kill_round(self, killed: set[int]) -> bool:
        """One freeze-kill-thaw round; whether the host has no process left afterwards."""
        pids = self.pids()
        if not pids:
            return True
        self.freeze(timeout_s=1.0)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        self.thaw(timeout_s=1.0)
        return wait_for(lambda: not self.pids(), timeout_s=0.5)

    def remove(self) -> None:
        """Remove the host's groups (their processes must be gone), then the fleet's and
        ShadowShift's parents when nothing else is in them."""
        for controller, path in self.paths.items():
            for folder in (path, path.parent, path.parent.parent):
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    continue
                except OSError as err:
                    if err.errno in (errno.EBUSY, errno.ENOTEMPTY) and folder != path:
                        break  # another host or fleet still uses the parent
                    raise InfraError(f"cannot remove cgroup {folder} ({controller}): "
                                     f"{err.strerror}") from err


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as err:
        raise InfraError(f"cannot write {value!r} to {path}: {err.strerror}") from err


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise InfraError(f"cannot read {path}: {err.strerror}") from err
