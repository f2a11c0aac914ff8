"""The runtime handle of one namespace host: run processes inside it, and break it on purpose.

How a process gets *inside* a host (Python 3.11 has no ``os.setns``, and a ``preexec_fn``
is unsafe in a threaded program such as a Temporal worker): the command is wrapped as

``sh -c JOIN <cgroup.procs files> -- nsenter --net=/run/netns/<host> [setpriv ...] argv``

``JOIN`` writes the shell's own pid into each of the host's ``cgroup.procs`` files (the
freezer first) and then ``exec``\\s; ``nsenter --net`` enters the host's network namespace
and ``exec``\\s; ``setpriv --reuid --regid --init-groups`` (when ``user`` is given) drops to
that OS user and ``exec``\\s. Nothing forks, so the pid :meth:`Host.popen` returns is the
program's own, and every child it starts inherits the namespace and the cgroups. The
process shares the machine's mount namespace: it sees the host's data filesystem at
:attr:`Host.data_dir` (and the rest of the machine's files).

The fault tools and what each models:

- :meth:`Host.kill` -- the host crashes: every process SIGKILLed at once;
- :meth:`Host.freeze` / :meth:`Host.thaw` -- the host hangs (GC pause, stalled VM): cgroup
  v1 freezer, every process stopped and later resumed where it was;
- :meth:`Host.partition` / :meth:`Host.heal` -- the network drops packets between the host
  and some or all peers (nftables inside the host's namespace; established connections
  stall too);
- :meth:`Host.isolate_port` / :meth:`Host.release_port` -- one server of the host is cut
  off (fencing), the rest of the host is not;
- :meth:`Host.fill_disk` / :meth:`Host.free_disk` -- the data disk is full (``ENOSPC``);
- :meth:`Host.throttle_disk` / :meth:`Host.unthrottle_disk` -- a slow disk (blkio).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import IO, Any

from infra.errors import InfraError, InvalidRequestError
from infra.hosts import _system, disk, firewall, network
from infra.hosts.build import HostPlan, host_plans
from infra.hosts.cgroups import HostCgroups
from infra.hosts.spec import FleetSpec

_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
"""Moves the shell into each cgroup named before ``--``, then execs the rest."""

_File = int | IO[Any] | None


@dataclass(frozen=True)
class Host:
    """One namespace host of a fleet, as seen from the machine (root namespace, root user)."""

    fleet: str
    """The fleet's name."""
    index: int
    """The fleet index."""
    name: str
    """The host's name."""
    address: IPv4Address
    """The host's one address (``eth0`` in its namespace)."""
    netns: str
    """Its network namespace (``/run/netns/<netns>``), also its veth's root side."""
    data_dir: Path
    """Where its data filesystem is mounted."""

    @classmethod
    def from_plan(cls, plan: HostPlan) -> Host:
        """The handle of a planned host."""
        return cls(plan.fleet, plan.index, plan.name, plan.address, plan.netns, plan.data_dir)

    @classmethod
    def from_spec(cls, spec: FleetSpec, name: str) -> Host:
        """The handle of host ``name`` of ``spec`` (everything follows from the spec)."""
        spec.host(name)  # refuses an unknown name, listing the known ones
        plan = next(p for p in host_plans(spec) if p.name == name)
        return cls.from_plan(plan)

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], name: str) -> Host:
        """The handle of host ``name`` from the fleet stack's outputs."""
        hosts = outputs.get("hosts") or {}
        if name not in hosts:
            raise InvalidRequestError(f"fleet {outputs.get('fleet')} has no host {name!r} "
                                      f"(hosts: {', '.join(sorted(hosts)) or 'none'})")
        entry = hosts[name]
        return cls(str(outputs["fleet"]), int(outputs["index"]), name,
                   IPv4Address(entry["address"]), str(entry["netns"]),
                   Path(entry["data_dir"]))

    # -- addresses -------------------------------------------------------------------------

    @property
    def control(self) -> IPv4Address:
        """The fleet's CONTROL address (``.1``)."""
        return network.control_address(self.index)

    @property
    def router(self) -> IPv4Address:
        """The fleet's ROUTER address (``.2``)."""
        return network.router_address(self.index)

    @property
    def temporal(self) -> IPv4Address:
        """The fleet's TEMPORAL address (``.3``)."""
        return network.temporal_address(self.index)

    @property
    def cgroups(self) -> HostCgroups:
        """The host's cgroup groups."""
        return HostCgroups(self.fleet, self.name)

    @property
    def cgroup_paths(self) -> dict[str, Path]:
        """Controller -> the host's cgroup directory."""
        return self.cgroups.paths

    # -- processes -------------------------------------------------------------------------

    def command(self, argv: Sequence[str], *, user: str | None = None) -> list[str]:
        """``argv`` wrapped so it runs inside the host (see the module's docstring)."""
        if not argv:
            raise InvalidRequestError("no command to run")
        inner = [*argv]
        if user is not None:
            entry = _user(user)
            inner = [_system.tool("setpriv"), f"--reuid={entry.pw_uid}",
                     f"--regid={entry.pw_gid}", "--init-groups", *inner]
        procs = [str(path) for path in self.cgroups.procs_files]
        return ["/bin/sh", "-c", _JOIN, "ss-join", *procs, "--",
                *_system.in_netns(self.netns, inner)]

    def popen(self, argv: Sequence[str], *, user: str | None = None,
              env: Mapping[str, str] | None = None, stdin: _File = subprocess.DEVNULL,
              stdout: _File = None, stderr: _File = None, log_path: Path | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the host, in a session of its own; returns at once (in a
        frozen host the process starts frozen).

        Args:
            user: OS user to run as (e.g. ``postgres``; root when ``None``).
            env: the environment (``None``: this process's); ``HOME``, ``USER`` and
                ``LOGNAME`` follow ``user`` unless ``env`` sets them.
            stdout, stderr: as for :class:`subprocess.Popen`.
            log_path: append stdout and stderr to this file instead (overrides both).
            cwd: working directory.
        """
        self._require()
        log_file = open(log_path, "ab") if log_path else None  # noqa: SIM115 (closed below)
        try:
            return subprocess.Popen(
                self.command(argv, user=user), env=_environment(user, env), cwd=cwd,
                stdin=stdin, stdout=log_file or stdout,
                stderr=subprocess.STDOUT if log_file else stderr, start_new_session=True)
        finally:
            if log_file:
                log_file.close()  # the child has its own copy

    def run(self, argv: Sequence[str], *, user: str | None = None,
            env: Mapping[str, str] | None = None, cwd: Path | None = None,
            input_text: str | None = None, timeout_s: float = 60.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host to completion, output captured as text.

        Raises:
            subprocess.CalledProcessError: it failed and ``check`` is set.
            subprocess.TimeoutExpired: it ran longer than ``timeout_s`` (it is killed).
        """
        self._require()
        return subprocess.run(self.command(argv, user=user), env=_environment(user, env),
                              cwd=cwd, input=input_text, capture_output=True, text=True,
                              timeout=timeout_s, check=check, start_new_session=True)

    def pids(self) -> set[int]:
        """Every process of the host (members of its cgroups)."""
        return self.cgroups.pids()

    def kill(self, *, timeout_s: float = 15.0) -> int:
        """Crash the host: freeze, SIGKILL every process, thaw; returns when none is left,
        with how many were killed."""
        return self.cgroups.kill_all(timeout_s=timeout_s)

    def freeze(self, *, timeout_s: float = 10.0) -> None:
        """Hang the host: every process stops where it is (cgroup v1 freezer).

        Raises:
            InfraError: not every process froze within ``timeout_s`` (one stuck in
                uninterruptible sleep); the freeze stays requested.
        """
        if not self.cgroups.freeze(timeout_s=timeout_s):
            raise InfraError(f"host {self.name} is still {self.cgroups.freezer_state()} after "
                             f"{timeout_s:.0f} s")

    def thaw(self, *, timeout_s: float = 10.0) -> None:
        """Let the host's processes run again."""
        if not self.cgroups.thaw(timeout_s=timeout_s):
            raise InfraError(f"host {self.name} is still {self.cgroups.freezer_state()} after "
                             f"{timeout_s:.0f} s")

    def frozen(self) -> bool:
        """Whether a freeze is in force (``FROZEN``, or ``FREEZING`` on the way there)."""
        return self.cgroups.freezer_state() != "THAWED"

    # -- network ---------------------------------------------------------------------------

    def partition(self, peers: Iterable[IPv4Address | str] | None = None) -> None:
        """Drop every IPv4 packet between the host and ``peers`` (``None``: everyone: the
        machine, CONTROL, ROUTER, TEMPORAL and the other hosts), both ways, established
        connections included. Absolute: replaces an earlier partition of this host."""
        self._require()
        addresses = None
        if peers is not None:
            try:
                addresses = [IPv4Address(str(peer)) for peer in peers]
            except ValueError as err:
                raise InvalidRequestError(f"partition of {self.name}: {err}") from err
        firewall.partition(self.netns, addresses)

    def heal(self) -> None:
        """Remove the host's partition (none is fine)."""
        self._require()
        firewall.heal(self.netns)

    def partitioned(self) -> bool:
        """Whether a partition is in force."""
        return firewall.partitioned(self.netns)

    def isolate_port(self, port: int) -> None:
        """Cut TCP ``port`` of the host off everyone but the host itself (a fenced server):
        see :func:`infra.hosts.firewall.isolate_port`. Not lifted by :meth:`heal`."""
        self._require()
        firewall.isolate_port(self.netns, port)

    def release_port(self, port: int) -> None:
        """Undo :meth:`isolate_port`."""
        self._require()
        firewall.release_port(self.netns, port)

    # -- disk ------------------------------------------------------------------------------

    def fill_disk(self) -> int:
        """Fill the data filesystem to ``ENOSPC`` with a ballast file; its size in bytes."""
        disk.device_of(self.data_dir)  # refuses to fill the folder of an unmounted disk
        return disk.fill(self.data_dir)

    def free_disk(self) -> int:
        """Remove the ballast; the bytes freed."""
        return disk.free(self.data_dir)

    def throttle_disk(self, write_bps: int, read_bps: int | None = None) -> None:
        """Limit the host's I/O on its data disk (blkio throttle of its loop device).

        What it bites on, measured with ``dd`` of 8 MiB inside a host at 4 MiB/s (2-core VM,
        kernel 6.18, cgroup v1; ``tests/infra/hosts/test_fleet.py`` prints the figures):
        direct writes (``oflag=direct``: 1.98 s instead of 0.01-0.02 s), buffered writes the
        writer flushes itself (``conv=fsync``: 1.98 s instead of 0.02-0.07 s; the fsync's
        write-back runs in the writer's context, so PostgreSQL's WAL flushes and checkpoint
        fsyncs are throttled), reads that miss the page cache (``iflag=direct``: 2.0 s
        instead of 0.005-0.008 s). What it does not throttle: buffered writes left to the
        kernel's background write-back (8 MiB without fsync: 0.017 s; cgroup v1 does not
        charge write-back to the writer's group) and the ext4 journal (written by
        ``jbd2``); page-cache hits never reach the disk. Small ``O_DSYNC`` writes (8 KiB)
        ran at about 2.7 MB/s with or without a 5 MiB/s limit: the journal commit per
        write bounds them first.
        """
        for value in (write_bps, read_bps):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise InvalidRequestError(f"throttle of {self.name}: rates are positive "
                                          f"integers of bytes per second, not {value!r}")
        self.cgroups.throttle(disk.device_of(self.data_dir), write_bps=write_bps,
                              read_bps=read_bps)

    def unthrottle_disk(self) -> None:
        """Lift the host's disk throttle."""
        self.cgroups.unthrottle()

    def _require(self) -> None:
        if not (_system.NETNS_DIR / self.netns).exists():
            raise InfraError(f"host {self.name} has no namespace {self.netns}: is fleet "
                             f"{self.fleet} up?")


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError as err:
        raise InvalidRequestError(f"no OS user {name!r} on this machine") from err


def _environment(user: str | None, env: Mapping[str, str] | None) -> dict[str, str] | None:
    if user is None:
        return None if env is None else dict(env)
    entry = _user(user)
    defaults = {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user}
    return {**os.environ, **defaults} if env is None else {**defaults, **env}
