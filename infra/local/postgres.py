"""PostgreSQL server processes for the local platform: find the binaries, run ``pg_ctl``, talk SQL.

Servers are started with ``pg_ctl`` so they outlive the process that started them (a Pulumi
dynamic-provider host, a worker); their state is read back from the data directory and the
server itself, never from memory.
"""

from __future__ import annotations

import glob
import logging
import os
import platform
import pwd
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from infra.errors import InfraError, InvalidRequestError

log = logging.getLogger(__name__)


def pg_bin(tool: str) -> str:
    """Absolute path of a PostgreSQL server tool (``initdb``, ``pg_ctl``, ``pg_basebackup``...).

    Debian keeps them in ``/usr/lib/postgresql/<major>/bin``, off ``PATH``; the newest wins.
    """
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True):
        candidate = Path(folder) / tool
        if candidate.exists():
            return str(candidate)
    found = shutil.which(tool)
    if found:
        return found
    raise InfraError(
        f"{tool} not found: install the PostgreSQL server (apt-get install postgresql)"
    )


def _major(folder: str) -> int:
    try:
        return int(Path(folder).parent.name)
    except ValueError:
        return 0


def server_os_user() -> str | None:
    """The OS user server tools run as: ``postgres`` when we are root (PostgreSQL refuses
    to run as root), else ``None`` for ourselves."""
    return "postgres" if os.geteuid() == 0 else None


def prepare_dir(path: Path, *, mode: int = 0o700) -> Path:
    """Create ``path`` owned by the server's OS user, so its tools can write there."""
    path.mkdir(parents=True, exist_ok=True)
    user = server_os_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


def give_to_server_user(path: Path) -> None:
    """Hand a file we wrote (as root) to the server's OS user."""
    user = server_os_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def as_server_user(argv: list[str]) -> list[str]:
    """``argv`` run as the server's OS user."""
    user = server_os_user()
    return ["runuser", "-u", user, "--", *argv] if user else argv


@dataclass(frozen=True, kw_only=True)
class PgEndpoint:
    """How to reach one PostgreSQL server."""

    host: str = "127.0.0.1"
    """Address it listens on."""
    port: int
    """TCP port."""
    user: str = "postgres"
    """Role to connect as."""
    dbname: str = "postgres"
    """Database to connect to."""
    password: str | None = None
    """Password, if the server asks for one."""
    ca_file: Path | None = None
    """CA (PEM) the server's certificate must chain to: the session then uses
    ``sslmode=verify-full`` (the certificate must also name :attr:`host`); ``None``: libpq's
    default (``prefer``)."""

    def conninfo(self, **extra: Any) -> str:
        """A libpq connection string (``extra`` adds parameters such as ``application_name``)."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            **extra,
        }
        if self.password:
            params["password"] = self.password
        if self.ca_file is not None:
            params.setdefault("sslmode", "verify-full")
            params.setdefault("sslrootcert", str(self.ca_file))
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})

    def connect(self, *, timeout_s: float = 5.0, autocommit: bool = True) -> psycopg.Connection:
        """Open a connection, failing fast when nothing listens."""
        return psycopg.connect(
            self.conninfo(connect_timeout=max(1, int(timeout_s))), autocommit=autocommit
        )


def alter_system(conn: psycopg.Connection, name: str, value: str | None) -> None:
    """``ALTER SYSTEM SET name = 'value'`` (``RESET`` for ``None``); reload separately."""
    if value is None:
        conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
    else:
        statement = sql.SQL("ALTER SYSTEM SET {} = {}")
        conn.execute(statement.format(sql.Identifier(name), sql.Literal(value)))


def set_synchronous_standby(conn: psycopg.Connection, standby_name: str | None) -> None:
    """Make the primary's commits wait for ``standby_name``'s flush (``None``: for nobody),
    reloaded."""
    names = f'FIRST 1 ("{standby_name}")' if standby_name else ""
    alter_system(conn, "synchronous_standby_names", names)
    conn.execute("SELECT pg_reload_conf()")


def query_one(endpoint: PgEndpoint, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """Run ``sql`` and return the first column of the first row (``None`` when no row)."""
    with endpoint.connect() as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def startup_sync_method() -> str:
    """How a standby makes its data directory durable when it starts from a copy or a rewind
    (``recovery_init_sync_method``): ``syncfs`` where Linux reports write-back errors to it
    (5.8 and later), else PostgreSQL's default ``fsync``.

    The first start after a copy or a crash syncs the whole data directory. With ``fsync`` that
    is one fsync per file, and on ext4 each of them flushes the disk's cache even when the file
    is clean. Measured on a 2-core VM (2026-12-07, medians of 8 rounds), a standby's first
    start on a 1 GB copy that ``pg_basebackup`` had just synced took 0.17 s this way and 0.08 s
    with ``syncfs``, one flush per file system; it is on provisioning's critical path. As
    PostgreSQL's documentation says, ``syncfs`` also writes back the dirty pages of every other
    file on that file system, so a file system busy with other writers makes it slower."""
    if platform.system() != "Linux":
        return "fsync"
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return "fsync"
    return "syncfs" if (major, minor) >= (5, 8) else "fsync"


@dataclass(frozen=True, kw_only=True)
class PgServer:
    """One server process: ``home/data`` is its data directory, ``home/server.log`` its log."""

    home: Path
    """Folder owned by the server's OS user that holds the data directory and the log."""
    port: int
    """TCP port (also the unix socket's suffix)."""

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        """Where ``pg_ctl`` sends the server log."""
        return self.home / "server.log"

    @property
    def endpoint(self) -> PgEndpoint:
        """Superuser endpoint of this server."""
        return PgEndpoint(port=self.port)

    def initialised(self) -> bool:
        """Whether the data directory holds a complete cluster."""
        return (self.data_dir / "PG_VERSION").exists() and (self.data_dir / "global").is_dir()

    def init(self, *, settings: dict[str, str] | None = None,
             initdb_options: Sequence[str] = ()) -> None:
        """``initdb`` a new cluster that listens on 127.0.0.1 only (trust auth, local tests);
        ``initdb_options`` are added to the command (e.g. ``--wal-segsize=1``)."""
        if self.initialised():
            return
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        prepare_dir(self.home, mode=0o755)
        prepare_dir(self.data_dir)
        run_server_tool(
            [
                pg_bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C",
                *initdb_options,
            ]
        )
        lines = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",  # TCP only: socket paths are length-limited
            **(settings or {}),
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# shadowshift\n")
            conf.writelines(f"{key} = {value}\n" for key, value in lines.items())
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")

    def pid(self) -> int | None:
        """PID of the running postmaster, or ``None``."""
        return _live_pid(self._pid_file_lines())

    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.pid() is not None

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def start(self, *, timeout_s: int = 60) -> None:
        """Start the server (idempotent) and wait until it accepts connections."""
        if self.running():
            return
        argv = [pg_bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                "-w", "-t", str(timeout_s), "-o", f"-p {self.port}"]
        run_server_tool_until(argv, self.accepting, tail_log=self.log_file)

    def accepting(self) -> bool:
        """Whether the postmaster runs and says it takes connections: the status line of
        ``postmaster.pid`` (``ready``, or ``standby`` for a hot standby) that ``pg_ctl -w``
        waits for."""
        lines = self._pid_file_lines()  # read once: it is polled every 5 ms while starting
        ready = len(lines) >= 8 and lines[7].strip() in ("ready", "standby")
        return ready and _live_pid(lines) is not None

    def write_standby_config(self, extra: dict[str, str], *, data_dir: Path | None = None) -> None:
        """Make the data directory a standby's: our settings in ``postgresql.auto.conf``
        (replacing whatever a copy or a rewind brought from the primary) plus
        ``standby.signal``. ``extra`` holds the replication source settings (quoted values);
        ``data_dir`` writes them into a copy not yet in place (default: :attr:`data_dir`)."""
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "hot_standby": "on",
            "hot_standby_feedback": "on",
            "synchronous_standby_names": "''",
            "archive_mode": "off",
            "wal_receiver_status_interval": "1s",
            # Once promoted, this node is the one a later recovery rewinds: pg_rewind needs
            # wal_log_hints from the start (the copy's own auto.conf is replaced here).
            "wal_log_hints": "on",
            "recovery_init_sync_method": startup_sync_method(),
            **extra,
        }
        target = data_dir or self.data_dir
        auto_conf = target / "postgresql.auto.conf"
        auto_conf.write_text(
            "# written by shadowshift\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        give_to_server_user(auto_conf)
        signal_file = target / "standby.signal"
        signal_file.touch()
        give_to_server_user(signal_file)

    def reload(self) -> None:
        """Make the running server re-read its configuration (``pg_ctl reload``)."""
        run_server_tool([pg_bin("pg_ctl"), "reload", "-D", str(self.data_dir)])

    def stop(self, *, mode: str = "fast", timeout_s: int = 60) -> None:
        """Stop the server (idempotent)."""
        if not self.running():
            return
        argv = [pg_bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t",
                str(timeout_s)]
        run_server_tool_until(argv, lambda: not self.running())

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would (its children exit on their own)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def run_server_tool(
    argv: list[str], *, tail_log: Path | None = None, pass_fds: tuple[int, ...] = (),
    timeout_s: float | None = 600.0,
) -> str:
    """Run a server tool as the server's OS user; ``pass_fds`` stay open in the tool.

    ``timeout_s`` bounds a tool that should be quick (``None``: a copy, which takes as long
    as the data; its activity's heartbeat and timeouts bound it instead).

    Raises:
        InfraError: it could not run, failed, or ran out of time (retryable).
    """
    try:
        done = subprocess.run(
            as_server_user(argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            pass_fds=pass_fds,
        )
    except FileNotFoundError as err:
        raise InfraError(f"cannot run {argv[0]}: {err}") from err
    except subprocess.TimeoutExpired as err:
        raise InfraError(f"{argv[0]} did not finish within {timeout_s:g} s") from err
    if done.returncode != 0:
        raise _tool_failure(argv, done.stderr or done.stdout, tail_log)
    return done.stdout


def run_server_tool_until(
    argv: list[str], finished: Callable[[], bool], *, tail_log: Path | None = None
) -> None:
    """Run a waiting server tool (``pg_ctl ... -w``) and return once ``finished()`` says
    what it waits for happened, or once it exits (its failure raised).

    ``pg_ctl -w`` looks only every 100 ms (60-70 ms lost per start on average, measured);
    checking the same condition every 5 ms returns sooner. The tool then finishes on its
    own (within 100 ms), reaped by a thread the interpreter waits for at exit. It runs in
    its own session: ``pg_ctl start`` stops the server it is still waiting for when it gets
    SIGINT, and the process group of a caller that already returned (a Pulumi provider
    host being shut down, a Ctrl-C) must not reach it.
    """
    try:
        tool = subprocess.Popen(as_server_user(argv), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    except FileNotFoundError as err:
        raise InfraError(f"cannot run {argv[0]}: {err}") from err
    while tool.poll() is None:
        if finished():
            threading.Thread(target=tool.communicate, name="reap-server-tool").start()
            return
        time.sleep(0.005)
    output, _ = tool.communicate()
    if tool.returncode != 0:
        raise _tool_failure(argv, output, tail_log)


def _tool_failure(argv: list[str], output: str, tail_log: Path | None) -> InfraError:
    detail = output.strip()
    if tail_log and tail_log.exists():
        detail += "\n" + "\n".join(tail_log.read_text().splitlines()[-8:])
    if "Address already in use" in detail or "could not create any TCP/IP sockets" in detail:
        return InvalidRequestError(f"{Path(argv[0]).name}: port already in use: {detail}")
    return InfraError(f"{Path(argv[0]).name} failed: {detail}")


def _live_pid(pid_file_lines: list[str]) -> int | None:
    """The postmaster's PID from ``postmaster.pid``'s lines if that process runs (possibly as
    another user), else ``None``."""
    try:
        pid = int(pid_file_lines[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return None
    except PermissionError:
        return pid
    if _zombie(pid):  # killed, not yet reaped (our PID 1 may never reap it): not running
        return None
    return pid


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but was not reaped yet (state ``Z`` in ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
