"""``shadowshift agent --host NAME`` (also ``python -m workers.agent``): the node agent.

One process per host, beside the PostgreSQL servers it manages: a Temporal worker polling
``contracts.agent.host_task_queue(NAME)`` with the host-local activities
(``activities/agent.py``), the lease keeper that fences a primary cut off from both its
control worker and its standby (``activities/agent_lease.py``), and a small HTTP endpoint
(``workers/agent_http.py``). ``docs/agent.md`` is the operator's guide.

Start-up refuses, with exit code 2 and one line naming the other agent (or certificate):

- a second agent on the same data root (an ``flock`` on ``<data root>/agent.lock``);
- a second agent for the same host anywhere: another poller on the host's task queue
  (``DescribeTaskQueue``). Its identity is ``shadowshift-agent/<version>@<host>/<pid>``. The
  poller of this data root's previous agent is ignored (the lock proves it dead: an agent
  SIGKILLed a moment ago must be replaceable at once), and so is a poller Temporal has not
  heard from for ``workers.agent_presence.POLLER_FRESH_S`` (90 s): until then a SIGKILLed
  agent's poller counts, so an agent for its host on *another* data root is refused. Two
  agents started within the same instant can both pass; the lock still keeps them off each
  other's data root;
- a client certificate for another host: with mutual TLS (``SHADOWSHIFT_TEMPORAL_TLS_CERT``)
  each agent has a certificate of its own whose common name or a DNS name is its ``--host``
  (docs/security.md says how the server side refuses a borrowed one in production);
- unusable PostgreSQL TLS files or passfile (``SHADOWSHIFT_PG_TLS_CA``/``_CERT``/``_KEY``,
  ``SHADOWSHIFT_PG_PASSFILE``): some but not all three set, a certificate not issued by the
  CA, expired, not naming ``--address``, a key of another certificate, a passfile others can
  read (``infra.pg_tls.check_server_tls``).

A refused agent leaves nothing behind: a data root it created for itself (with its lock
file) is removed again.

Exit codes: 0 after SIGTERM/SIGINT (the servers keep running; only the lease stops), 2 bad
options or refused (by us, or by Temporal's TLS: certificates, names), 3 Temporal
unreachable. Stopping the agent stops nothing else: the PostgreSQL servers run in sessions of
their own.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from activities.agent import HostAgentActivities
from activities.agent_catalog import ServerCatalog
from activities.agent_lease import LeaseKeeper
from activities.agent_metrics import AgentMetrics
from activities.agent_server import AgentConfig
from contracts.agent import host_task_queue
from contracts.version import VERSION
from infra.errors import InvalidRequestError
from infra.pg_security import check_passfile_mode
from infra.pg_tls import check_server_tls, tls_files
from workers.agent_http import AgentHttpApi, AgentHttpServer
from workers.agent_presence import host_pollers
from workers.agent_settings import AgentOptions, add_agent_arguments, options_from_args
from workers.logging_config import configure_logging
from workers.payload_codec import announce, data_converter
from workers.process_exit import exit_process
from workers.settings import Settings, SettingsError, load_settings
from workers.temporal_tls import CERT_VAR, client_certificate, tls_config, tls_problem
from workers.temporal_tls import announce as announce_tls

log = logging.getLogger("shadowshift.agent")

PROG = "shadowshift agent"
OK, REFUSED, UNREACHABLE = 0, 2, 3
LOCK_FILE = "agent.lock"
IDENTITY_FILE = "agent.identity"
SHUTDOWN_GRACE_S = 10.0
"""How long running activities may finish after SIGTERM (a long copy is retried anyway)."""


class AgentStartError(Exception):
    """The agent cannot start; the message is one line, ``exit_code`` says which kind."""

    def __init__(self, message: str, exit_code: int = REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def agent_identity(host: str, pid: int | None = None) -> str:
    """The Temporal identity of ``host``'s agent: ``shadowshift-agent/<version>@<host>/<pid>``."""
    return f"shadowshift-agent/{VERSION}@{host}/{pid if pid is not None else os.getpid()}"


def agent_config(options: AgentOptions, settings: Settings) -> AgentConfig:
    """The activities' configuration from the options (data root defaulted) and the
    PostgreSQL TLS files and passfile of ``settings``, checked.

    Raises:
        AgentStartError: the TLS files or the passfile are unusable (the message names the
            variable).
    """
    data_root = options.data_root or settings.state_dir / "agents" / options.host
    try:
        tls = tls_files(settings.pg_tls_ca, settings.pg_tls_cert, settings.pg_tls_key)
        if tls is not None:
            check_server_tls(tls, options.address)
        if settings.pg_passfile is not None:
            check_passfile_mode(settings.pg_passfile)
    except InvalidRequestError as err:
        raise AgentStartError(str(err)) from err
    return AgentConfig(host=options.host, address=options.address, data_root=data_root,
                       trust_cidr=options.trust_cidr, pg_tls=tls, passfile=settings.pg_passfile)


@contextmanager
def data_root_lock(data_root: Path) -> Iterator[str | None]:
    """Hold ``<data_root>/agent.lock`` for the agent's life; yields the identity of the
    previous agent of this data root (dead: it held the lock while alive). A data root this
    call created is removed again when the agent does not start (:class:`AgentStartError`).

    Raises:
        AgentStartError: another agent holds it.
    """
    created = [path for path in (data_root, *data_root.parents) if not path.exists()]
    data_root.mkdir(parents=True, exist_ok=True)
    identity_file = data_root / IDENTITY_FILE
    fd = os.open(data_root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(identity_file) or "an agent"
            raise AgentStartError(f"{holder} already runs on {data_root}; stop it first") \
                from None
        try:
            yield _read(identity_file) or None
        except AgentStartError:
            _remove_created(created)
            raise
    finally:
        os.close(fd)


def _remove_created(created: list[Path]) -> None:
    """Remove the folders a refused agent created (deepest first), with its own files only:
    a folder holding anything else stays."""
    if not created:
        return
    for name in (LOCK_FILE, IDENTITY_FILE):
        (created[0] / name).unlink(missing_ok=True)
    for path in created:
        try:
            path.rmdir()
        except OSError:
            return


async def other_agent(client: Client, host: str, predecessor: str | None) -> str | None:
    """The identity of another live poller of ``host``'s task queue, if any (see the module
    docstring for which pollers are not counted)."""
    for poller in await host_pollers(client, host):
        if predecessor is not None and poller.identity == predecessor:
            log.info("Ignoring the poller of this data root's previous agent, %s (gone).",
                     predecessor)
            continue
        return poller.identity
    return None


def check_identity(settings: Settings, host: str) -> None:
    """Refuse to serve ``host`` with TLS settings that are unusable or with another host's
    client certificate: its common name or one of its DNS names must be ``host``.

    Raises:
        AgentStartError: the message names the variable and the names the certificate has.
    """
    try:
        tls_config(settings)
        identity = client_certificate(settings)
    except SettingsError as err:
        raise AgentStartError(str(err)) from err
    if identity is None:
        return
    if host not in (name.lower() for name in identity.names):
        raise AgentStartError(
            f"{CERT_VAR}: {settings.temporal_tls_cert} is the certificate of "
            f"{identity.subject} (names: {', '.join(identity.names) or 'none'}), not of host "
            f"{host}; give this agent its own certificate, with CN={host} or DNS name {host}")


async def connect(settings: Settings) -> Client:
    """A client of the worker's Temporal, with the workers' payload keys (an agent decrypts
    the activities' inputs it is sent) and the TLS of ``settings``; :class:`AgentStartError`
    (exit 3) if unreachable, or (exit 2) if refused or the keys or certificates are unusable."""
    try:
        converter = data_converter(settings)
        tls = tls_config(settings)
    except SettingsError as err:
        raise AgentStartError(str(err), REFUSED) from err
    try:
        client = await asyncio.wait_for(
            Client.connect(settings.temporal_address, namespace=settings.namespace,
                           data_converter=converter, tls=tls), timeout=15)
    except (TimeoutError, RuntimeError, OSError) as err:
        problem = tls_problem(err, settings, settings.temporal_address)
        if problem:
            raise AgentStartError(f"cannot connect to Temporal at {settings.temporal_address}: "
                                  f"{problem}", REFUSED) from err
        raise AgentStartError(
            f"cannot reach Temporal at {settings.temporal_address} ({err}); start it or set "
            "SHADOWSHIFT_TEMPORAL_ADDRESS", UNREACHABLE) from err
    return client


async def serve(options: AgentOptions, settings: Settings, stop: asyncio.Event) -> None:
    """Run the agent until ``stop`` is set.

    Raises:
        AgentStartError: it cannot start (the message says why).
    """
    check_identity(settings, options.host)  # before anything is created
    config = agent_config(options, settings)
    queue = host_task_queue(options.host)
    with data_root_lock(config.data_root) as predecessor:
        client = await connect(settings)
        other = await other_agent(client, options.host, predecessor)
        if other is not None:
            raise AgentStartError(f"host {options.host} is already served by {other} "
                                  f"(polling {queue}); stop that agent first")
        # Once it serves: a refused agent says one line.
        announce_tls(log, settings, settings.temporal_address)
        announce(log, client.data_converter)
        if config.pg_tls is None:
            log.warning("No SHADOWSHIFT_PG_TLS_* files: this host's servers serve no TLS and "
                        "trust the network %s (a test world's setting).", config.effective_cidr)
        identity = agent_identity(options.host)
        (config.data_root / IDENTITY_FILE).write_text(identity + "\n")
        catalog = ServerCatalog(config)
        keeper = LeaseKeeper(catalog)
        activities = HostAgentActivities(config, leases=keeper, catalog=catalog)
        api = AgentHttpApi(host=options.host, address=options.address, identity=identity,
                           catalog=catalog, keeper=keeper, metrics=AgentMetrics())
        try:
            http = AgentHttpServer(api, options.address, options.http_port)
        except OSError as err:
            raise AgentStartError(f"cannot listen on {options.address}:{options.http_port} "
                                  f"({err.strerror}); choose another --http-port") from err
        keeper.start()  # fencing first: a thawed or restarted agent checks before serving
        # A standby that is down comes back on its own, after a reboot as after a crash (in
        # the background: a standby replaying a long way must not delay the host's queue).
        watchdog = threading.Thread(target=_keep_standbys_up, args=(catalog, stop),
                                    name="standby-watchdog", daemon=True)
        watchdog.start()
        http.start()
        try:
            await _poll(client, settings, identity, queue, activities, config, http.port, stop)
        finally:
            http.stop()
            keeper.stop()
    log.info("Agent stopped.")


STANDBY_CHECK_S = 5.0
"""Time between two looks for standbys that are down."""


def _keep_standbys_up(catalog: ServerCatalog, stop: asyncio.Event) -> None:
    """Start standbys that are down (``ServerCatalog.start_standbys``) until the agent stops.
    (``stop`` is only read: an asyncio event's flag is safe to read from another thread.)"""
    while not stop.is_set():
        try:
            catalog.start_standbys()
        except Exception:  # the watchdog must outlive any one failure
            log.exception("Standby watchdog check failed.")
        time.sleep(STANDBY_CHECK_S)


async def _poll(client: Client, settings: Settings, identity: str, queue: str,
                activities: HostAgentActivities, config: AgentConfig, http_port: int,
                stop: asyncio.Event) -> None:
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as pool:
        worker = Worker(
            client, task_queue=queue, identity=identity, activity_executor=pool,
            activities=[activities.hello, activities.ensure_primary, activities.seed_standby,
                        activities.inspect_server, activities.rewind_as_standby,
                        activities.start_server, activities.stop_server,
                        activities.fence_server, activities.destroy_server,
                        activities.probe_local],
            max_concurrent_activities=settings.max_concurrent_activities,
            graceful_shutdown_timeout=timedelta(seconds=SHUTDOWN_GRACE_S))
        async with worker:
            log.info("Agent %s polling %s on %s (namespace %s); HTTP on %s:%d; data in %s.",
                     identity, queue, settings.temporal_address, settings.namespace,
                     config.address, http_port, config.data_root)
            await stop.wait()
            log.info("Shutdown requested. Draining the agent.")


def run_agent(options: AgentOptions, settings: Settings) -> int:
    """Run the agent in this process until SIGTERM or SIGINT; returns the exit code."""
    configure_logging(settings.log_level)

    async def main() -> None:
        """Serve until a signal sets ``stop``."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(options, settings, stop)

    try:
        asyncio.run(main())
    except AgentStartError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return err.exit_code
    return OK


def run_from_args(args: argparse.Namespace) -> int:
    """Run with options parsed by ``workers.agent_settings.add_agent_arguments``."""
    try:
        settings = load_settings(worker=False)  # no Pulumi on a host
    except SettingsError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return REFUSED
    return run_agent(options_from_args(args), settings)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workers.agent``: the same as ``shadowshift agent``."""
    parser = argparse.ArgumentParser(prog=PROG, description="The ShadowShift node agent.")
    add_agent_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


if __name__ == "__main__":
    exit_process(main())
