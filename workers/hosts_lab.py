"""A lab of namespace hosts with node agents, for the demo, the tests and the benchmarks.

On one machine, ``HostsLab.create`` builds what a VM fleet would be: a fleet of network
namespace hosts (``infra.hosts``, one Pulumi stack), a gateway that makes the Temporal dev
server reachable on the fleet's TEMPORAL address, and a ``shadowshift agent`` inside each
host (its namespace and cgroups) with its data on the host's own filesystem. It then hands out
protection specs for the hosts platform and creates primaries through their hosts' agents.
Everything it made goes away with :meth:`HostsLab.close`.

Replication between the hosts is secured as docs/security.md asks of an operator (``secure``,
the default): the lab's set-up issues a CA and, for each host, a server certificate naming the
host's address; each host gets, on its own filesystem, the CA, its certificate and key, and a
passfile with the password of the replication role :data:`REPLICATION_ROLE`, which
:meth:`HostsLab.ensure_primary` creates (SCRAM-SHA-256, with the rights ``pg_rewind`` needs)
on every primary. Its agent is started with those paths (``SHADOWSHIFT_PG_TLS_*``,
``SHADOWSHIFT_PG_PASSFILE``); the password stays in those files and in this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client

from contracts.agent_tasks import AgentTask, EnsurePrimaryRequest, ServerInfo, ServerRef
from contracts.policy import Policy
from contracts.spec import ProtectionSpec
from contracts.spec_hosts import HostPlacement, HostsSection
from contracts.version import VERSION
from infra.files import write_whole
from infra.hosts import cleanup, network
from infra.hosts.fleet import destroy_fleet, fleet_hosts, up_fleet
from infra.hosts.gateway import TemporalGateway
from infra.hosts.host import Host
from infra.hosts.spec import FleetSpec, HostSpec
from infra.local.pki import LocalPki
from infra.local.postgres import PgEndpoint
from infra.local.secure_replication import create_replication_role, grant_rewind_rights
from infra.pulumi_engine import StackDriver
from workers.agent_presence import host_pollers
from workers.settings import REPO_ROOT, Settings, load_settings
from workflows.host_task import HostTaskWorkflow, host_task_workflow_id

log = logging.getLogger(__name__)

GATEWAY_PORT = 7233
"""Port of the Temporal gateway on the fleet's TEMPORAL address."""
PG_PORT = 5432
"""Every host has an address of its own, so each server takes PostgreSQL's usual port."""
REPLICATION_ROLE = "replicator"
"""The replication role of a secure lab's specs (SCRAM, created on each primary)."""
CREDENTIALS_DIR = "pg-credentials"
"""Folder on each host's own filesystem holding its TLS files and passfile."""


def lab_settings(state_dir: Path) -> Settings:
    """Settings of a control worker whose Pulumi stacks and router live in ``state_dir``,
    with the repository's secrets passphrase (``make setup`` writes it).

    Raises:
        SettingsError: the passphrase file is missing (the message says to run make setup).
    """
    return load_settings({
        "SHADOWSHIFT_STATE_DIR": str(state_dir),
        "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE": str(REPO_ROOT / ".state" / "pulumi-passphrase")})


@dataclass
class HostsLab:
    """A running fleet of agent hosts."""

    driver: StackDriver
    """Pulumi driver of the fleet's stack."""
    fleet: FleetSpec
    """The fleet."""
    hosts: dict[str, Host]
    """Runtime handles, by host name."""
    gateway: TemporalGateway
    """Where agents reach Temporal."""
    log_dir: Path
    """Agents' logs."""
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    """Agent processes, by host name."""
    agent_started: dict[str, float] = field(default_factory=dict)
    """When each agent was started (epoch seconds): its poller must be seen after that."""
    payload_key_file: Path | None = None
    """Payload keys the agents encrypt and decrypt Temporal payloads with (the workers' file;
    ``None``: payloads in clear)."""
    replication_password: str = field(default="", repr=False)
    """The password of :data:`REPLICATION_ROLE` (empty: the lab is not secure and its
    agents trust their network)."""
    ca_file: Path | None = None
    """The lab's CA, which issued every host's server certificate (``None``: not secure)."""

    @property
    def secure(self) -> bool:
        """Whether replication between the hosts uses TLS and SCRAM."""
        return bool(self.replication_password)

    @property
    def replication_user(self) -> str:
        """The role specs replicate as."""
        return REPLICATION_ROLE if self.secure else "postgres"

    @classmethod
    def create(cls, driver: StackDriver, base_dir: Path, names: tuple[str, ...],
               temporal: tuple[str, int], *, disk_mib: int = 512,
               fleet_name: str = "", secure: bool = True) -> HostsLab:
        """Build the fleet under ``base_dir`` and the gateway to ``temporal`` (a dev server's
        host and port); ``secure``: TLS and SCRAM between the hosts (see the module). Keep
        ``base_dir`` short: a server's unix socket lives under it, and socket paths hold at
        most 107 characters.

        Raises:
            InvalidRequestError: bad names, or the machine cannot host namespaces.
        """
        name = fleet_name or f"lab{uuid.uuid4().hex[:6]}"
        index = network.free_fleet_index(start=random.randrange(256))
        spec = FleetSpec(name, index, tuple(HostSpec(n, disk_mib=disk_mib) for n in names),
                         base_dir / name)
        up_fleet(driver, spec)
        gateway = TemporalGateway(base_dir / f"{name}-gateway",
                                  str(network.temporal_address(index)), GATEWAY_PORT,
                                  temporal[0], temporal[1])
        lab = cls(driver, spec, fleet_hosts(spec), gateway, base_dir / f"{name}-logs")
        try:
            if secure:
                lab.replication_password = secrets.token_urlsafe(24)
                lab.issue_credentials(LocalPki(base_dir / f"{name}-pki"))
            gateway.start()
        except Exception:
            lab.close()
            raise
        return lab

    def issue_credentials(self, pki: LocalPki) -> None:
        """Give each host what an operator would: the CA, a certificate naming the host's
        address and its key, and the replication role's passfile (``*`` for the database:
        the stream and ``pg_rewind``'s session both match), on the host's own filesystem.
        Each certificate also names ``127.0.0.1``, where the control machine's router listens,
        so a client may verify the node behind the router by its address."""
        self.ca_file = pki.ca_file
        for name, host in self.hosts.items():
            issued = pki.server_cert(name, (str(host.address),))
            folder = self.credentials_dir(name)
            folder.mkdir(mode=0o700, exist_ok=True)
            write_whole(folder / "ca.crt", pki.ca_file.read_bytes(), 0o644)
            write_whole(folder / "server.crt", issued.cert.read_bytes(), 0o644)
            write_whole(folder / "server.key", issued.key.read_bytes(), 0o600)
            write_whole(folder / "pgpass",
                   f"*:*:*:{REPLICATION_ROLE}:{self.replication_password}\n".encode(), 0o600)

    def credentials_dir(self, name: str) -> Path:
        """Where host ``name`` keeps its TLS files and passfile."""
        return self.hosts[name].data_dir / CREDENTIALS_DIR

    def agent_environment(self, name: str) -> dict[str, str]:
        """The ``SHADOWSHIFT_PG_*`` settings of host ``name``'s agent (none if not secure)."""
        if not self.secure:
            return {}
        folder = self.credentials_dir(name)
        return {"SHADOWSHIFT_PG_TLS_CA": str(folder / "ca.crt"),
                "SHADOWSHIFT_PG_TLS_CERT": str(folder / "server.crt"),
                "SHADOWSHIFT_PG_TLS_KEY": str(folder / "server.key"),
                "SHADOWSHIFT_PG_PASSFILE": str(folder / "pgpass")}

    def worker_settings(self, settings: Settings) -> Settings:
        """``settings`` of a control worker for this lab: in a secure lab with the lab's CA
        (``SHADOWSHIFT_PG_TLS_CA``), so its own SQL to the hosts' servers uses
        ``verify-full``."""
        if self.ca_file is None:
            return settings
        return dataclasses.replace(settings, pg_tls_ca=self.ca_file)

    def worker_environment(self) -> dict[str, str]:
        """The same for a control worker started as a process (its environment)."""
        return {} if self.ca_file is None else {"SHADOWSHIFT_PG_TLS_CA": str(self.ca_file)}

    # -- agents ----------------------------------------------------------------------------

    def start_agent(self, name: str, *,
                    pg_settings: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``shadowshift agent`` inside host ``name`` (its data on the host's disk), with
        the lab's TLS files and passfile for it unless ``pg_settings`` replaces them."""
        host = self.hosts[name]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
        env.update(SHADOWSHIFT_TEMPORAL_ADDRESS=self.gateway.address,
                   SHADOWSHIFT_LOG_LEVEL="INFO")
        env.update(self.agent_environment(name) if pg_settings is None else pg_settings)
        if self.payload_key_file is not None:
            env["SHADOWSHIFT_PAYLOAD_KEY_FILE"] = str(self.payload_key_file)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        process = host.popen(
            [sys.executable, "-m", "workers.cli", "agent", "--host", name,
             "--address", str(host.address), "--data-root", str(host.data_dir / "agent")],
            env=env, cwd=REPO_ROOT, log_path=self.log_dir / f"agent-{name}.log")
        self.agents[name] = process
        self.agent_started[name] = time.time()
        return process

    def stop_agent(self, name: str, *, sig: int = signal.SIGTERM) -> None:
        """Stop host ``name``'s agent (SIGKILL: as a crash would); its servers keep running."""
        process = self.agents.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def wait_for_agents(self, client: Client, timeout_s: float = 60.0) -> None:
        """Until every started agent polls its host's queue."""
        deadline = time.monotonic() + timeout_s
        for name in self.agents:
            while True:
                # The server lists a dead agent's poller for minutes: only a poll seen since
                # this agent started counts.
                since = time.time() - self.agent_started.get(name, 0.0)
                if any(p.seen_s_ago <= since for p in await host_pollers(client, name)):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the agent of {name} did not poll within {timeout_s} s "
                                       f"(log: {self.log_dir / f'agent-{name}.log'})")
                await asyncio.sleep(0.2)

    # -- instances -------------------------------------------------------------------------

    def placement(self, name: str) -> HostPlacement:
        """Host ``name`` as a spec names it."""
        return HostPlacement(name, str(self.hosts[name].address))

    def spec(self, instance_id: str, primary: str, shadow: str, router_port: int, *,
             tier: int = 1, policy: Policy | None = None, port: int = PG_PORT,
             spares: tuple[str, ...] = ()) -> ProtectionSpec:
        """A hosts-platform spec for ``instance_id``: primary on ``primary``, shadow on
        ``shadow``, both on ``port``, routed on ``router_port`` of this machine; ``spares``
        may take the shadow if its host is lost for good."""
        section = HostsSection(self.placement(primary), self.placement(shadow),
                               fleet_index=self.fleet.index,
                               router_source=str(network.router_address(self.fleet.index)),
                               spares=[self.placement(name) for name in spares])
        return ProtectionSpec(instance_id, "hosts", tier, port, port, router_port,
                              policy=policy or Policy(), hosts=section,
                              replication_user=self.replication_user)

    async def ensure_primary(self, client: Client, task_queue: str, host: str,
                             instance_id: str, port: int = PG_PORT,
                             settings: dict[str, str] | None = None) -> ServerInfo:
        """A running primary for ``instance_id`` on ``host``, made by its agent (through
        ``HostTaskWorkflow`` on a worker polling ``task_queue``); in a secure lab with the
        replication role (its SCRAM verifier computed here, so the password never reaches
        the server's log or the workflow)."""
        task = AgentTask(host, ensure_primary=EnsurePrimaryRequest(
            VERSION, ServerRef(instance_id, instance_id, port), settings or {}))
        result = await client.execute_workflow(
            HostTaskWorkflow.run, task, id=host_task_workflow_id(task), task_queue=task_queue)
        info = ServerInfo(**result)  # the workflow returns plain data (its result is Any)
        if self.secure:
            endpoint = PgEndpoint(host=info.address, port=info.port)
            await asyncio.to_thread(create_replication_role, endpoint, REPLICATION_ROLE,
                                    self.replication_password)
            await asyncio.to_thread(grant_rewind_rights, endpoint, REPLICATION_ROLE)
        return info

    # -- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the agents, kill every process of every host, stop the gateway, destroy the
        fleet (and clean what a failed destroy left)."""
        for name in list(self.agents):
            with contextlib.suppress(Exception):
                self.stop_agent(name, sig=signal.SIGKILL)
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.thaw()
            with contextlib.suppress(Exception):
                host.kill()
        self.gateway.stop()
        try:
            destroy_fleet(self.driver, self.fleet)
        except Exception as err:  # leave nothing behind even so
            log.warning("Destroying fleet %s failed (%s); cleaning by hand", self.fleet.name,
                        err)
            cleanup.remove_fleet(self.fleet.name, index=self.fleet.index,
                                 state_dir=self.fleet.state_dir)



