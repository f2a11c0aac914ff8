"""What the demo starts and stops: the Temporal dev server, two namespace hosts with their
agents, a worker, a primary on the first host behind HAProxy.

Each piece is an async context manager that stops what it started on the way out, whether the
demo finished, failed or was interrupted (Ctrl-C). The worker runs in a process group of its
own so its children (Pulumi) go with it; everything that ran inside a host (agent, PostgreSQL
servers) dies with the host (:meth:`workers.hosts_lab.HostsLab.close`), and a run that was
killed outright is cleaned up by the next (:func:`fresh_state_dir`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts import search_attributes
from contracts.policy import Policy
from contracts.spec import ProtectionSpec
from infra.errors import InfraError
from infra.files import write_whole
from infra.hosts import cleanup, records
from infra.hosts.gateway import TemporalGateway
from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.ports import free_port, port_free
from infra.local.postgres import PgEndpoint
from infra.pulumi_engine import StackDriver
from workers.codec_server import CodecServer
from workers.hosts_lab import PG_PORT, HostsLab, lab_settings
from workers.payload_codec import EncryptionCodec, converter_for
from workers.payload_keys import new_entry, read_key_file
from workers.registry import pulumi_config
from workers.settings import REPO_ROOT


def say(message: str) -> None:
    """One line of progress for the person watching."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    return preferred if port_free(preferred) else free_port()


@dataclass(frozen=True)
class DevServer:
    """A running dev server."""

    client: Client
    """Client on the ``default`` namespace."""
    ui_url: str
    """Base URL of the Web UI."""
    metrics_url: str
    """The server's Prometheus endpoint (its ``action`` counter is what Cloud bills)."""
    key_file: Path | None = None
    """The payload keys its clients use (``None``: payloads in clear)."""

    @property
    def address(self) -> str:
        """host:port of the frontend."""
        return self.client.service_client.config.target_host


@asynccontextmanager
async def dev_server(key_file: Path | None = None) -> AsyncIterator[DevServer]:
    """A Temporal dev server with the Web UI and our search attributes registered.

    With ``key_file``, this client encrypts payloads with its keys (the worker and the
    agents get the same file), and the Web UI shows them decrypted through a codec server on
    127.0.0.1 that answers only the UI's origin (``--ui-codec-endpoint``): what an operator
    sets up for a real cluster (docs/security.md)."""
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    port, ui_port, metrics_port = _port(7233), _port(8233), free_port()
    ui_url = f"http://localhost:{ui_port}"
    extra = ["--metrics-port", str(metrics_port)]
    converter = converter_for(read_key_file(key_file) if key_file else None)
    codec_server = None
    if key_file is not None:
        codec = converter.payload_codec
        assert isinstance(codec, EncryptionCodec)
        codec_server = CodecServer(codec, port=free_port(),
                                   cors_origins=(ui_url, f"http://127.0.0.1:{ui_port}"))
        codec_server.start()
        extra += ["--ui-codec-endpoint", codec_server.url]
    try:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal,
            port=port,
            ui=True,
            ui_port=ui_port,
            search_attributes=search_attributes.ALL,
            data_converter=converter,
            dev_server_log_level="error",
            dev_server_extra_args=extra,
        )
        try:
            yield DevServer(env.client, ui_url, f"http://127.0.0.1:{metrics_port}/metrics",
                            key_file)
        finally:
            say("Stopping the Temporal dev server.")
            await env.shutdown()
    finally:
        if codec_server is not None:
            codec_server.stop()


def demo_payload_keys(state_dir: Path) -> Path:
    """A fresh payload key for this run's dev server (mode 0600 in ``state_dir``): the demo's
    histories are encrypted like a production worker's."""
    path = state_dir / "payload-keys"
    write_whole(path, (new_entry("demo") + "\n").encode(), 0o600)
    return path


@asynccontextmanager
async def worker_process(
    address: str, state_dir: Path, task_queue: str, key_file: Path | None = None,
    extra_env: dict[str, str] | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``python -m workers.demo_worker`` (the worker, reading the demo's metric overlays)
    against ``address``, in its own process group; ``key_file``: its payload keys;
    ``extra_env``: more ``SHADOWSHIFT_*`` settings (the lab's CA:
    ``HostsLab.worker_environment``)."""
    passphrase = _passphrase()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
    env.update(
        SHADOWSHIFT_TEMPORAL_ADDRESS=address,
        SHADOWSHIFT_TASK_QUEUE=task_queue,
        SHADOWSHIFT_STATE_DIR=str(state_dir),
        SHADOWSHIFT_PULUMI_PASSPHRASE_FILE=str(passphrase),
        SHADOWSHIFT_LOG_LEVEL="INFO",
        SHADOWSHIFT_WATCH_INTERVAL_S="0",  # the demo starts its watcher with its own pace
    )
    if key_file is not None:
        env["SHADOWSHIFT_PAYLOAD_KEY_FILE"] = str(key_file)
    env.update(extra_env or {})
    log = (state_dir / "worker.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.demo_worker"], cwd=REPO_ROOT, env=env,
        start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        say("Stopping the worker.")
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # any child left in the group
        log.close()


HOSTS = ("host-a", "host-b")
"""The demo's two hosts: the primary's and the shadow's. A fresh dev server per run, so no
agent of an earlier run is listed on their queues."""


@dataclass
class HostsService:
    """The protected service: a primary PostgreSQL on host ``host-a`` (made by its agent),
    its shadow to be on ``host-b``, HAProxy on this machine in front."""

    lab: HostsLab
    instance_id: str
    router_port: int
    haproxy: HAProxyManager
    primary_host: str = HOSTS[0]
    shadow_host: str = HOSTS[1]

    @property
    def router(self) -> PgEndpoint:
        """Where clients connect."""
        return PgEndpoint(port=self.router_port)

    @property
    def nodes(self) -> dict[str, str]:
        """Node → the host it lives on."""
        return {self.instance_id: self.primary_host,
                f"{self.instance_id}-shadow": self.shadow_host}

    def endpoint(self, node: str) -> PgEndpoint:
        """``node``'s server, reached directly on its host (not through the router)."""
        return PgEndpoint(host=str(self.lab.hosts[self.nodes[node]].address), port=PG_PORT)

    def identity(self, node: str) -> str:
        """``node`` as the hosts fleet observer names it (a metric overlay's key)."""
        endpoint = self.endpoint(node)
        return f"{endpoint.host}:{endpoint.port}"

    def spec(self, policy: Policy, tier: int) -> ProtectionSpec:
        """The protection's spec: hosts platform, primary and shadow on the two hosts."""
        return self.lab.spec(self.instance_id, self.primary_host, self.shadow_host,
                             self.router_port, tier=tier, policy=policy)

    async def create_primary(self, client: Client, task_queue: str) -> None:
        """The primary, initialised by its host's agent (through a worker on ``task_queue``):
        archiving on, so every tier can protect it; its agent always sets wal_log_hints, so a
        former primary is rewound rather than recopied."""
        await self.lab.wait_for_agents(client)
        await self.lab.ensure_primary(client, task_queue, self.primary_host, self.instance_id,
                                      settings={"archive_mode": "on"})

    def route_primary(self, spec: ProtectionSpec) -> None:
        """Put the primary behind HAProxy, as a service already in production is behind its
        load balancer before anyone protects it (the protection adopts the entry; without
        one, it would create it)."""
        assert spec.hosts is not None
        self.haproxy.start()
        self.haproxy.ensure_service(self.instance_id, self.router_port, [ServerEntry(
            self.instance_id, str(self.endpoint(self.instance_id).host), PG_PORT,
            spec.hosts.router_source)])

    def serving_node(self) -> str | None:
        """The one server the router sends traffic to (``None``: none or several)."""
        try:
            live = [n for n, w in self.haproxy.weights(self.instance_id).items() if w > 0]
        except InfraError:
            return None
        return live[0] if len(live) == 1 else None

    def fail_host(self, node: str) -> int:
        """``node``'s host fails: every process in it is SIGKILLed; how many."""
        return self.lab.hosts[self.nodes[node]].kill()


@asynccontextmanager
async def hosts_service(state_dir: Path, server: DevServer,
                        key_file: Path | None = None) -> AsyncIterator[HostsService]:
    """Two namespace hosts (a Pulumi stack of the demo's own), each with its agent, reaching
    the dev server through the fleet's gateway; all of it gone on the way out."""
    instance_id = f"demo-{uuid.uuid4().hex[:6]}"
    settings = lab_settings(state_dir)
    host, port = server.address.rsplit(":", 1)
    root = hosts_root(state_dir)
    try:
        lab = await asyncio.to_thread(HostsLab.create, StackDriver(pulumi_config(settings)),
                                      root, HOSTS, (host, int(port)), disk_mib=512,
                                      fleet_name=f"demo{uuid.uuid4().hex[:4]}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    lab.log_dir = state_dir / "agents"  # kept after the run, beside the worker's log
    lab.payload_key_file = key_file
    haproxy = HAProxyManager(state_dir / "haproxy")
    try:
        for name in HOSTS:
            lab.start_agent(name)
        yield HostsService(lab, instance_id, free_port(), haproxy)
    finally:
        say("Stopping the hosts (their agents and PostgreSQL servers) and HAProxy.")
        with suppress(Exception):
            haproxy.stop()
        await asyncio.to_thread(lab.close)
        shutil.rmtree(root, ignore_errors=True)


HOSTS_ROOT_PREFIX = "ssdemo"
"""Name prefix of the hosts' folder in /tmp (see :func:`hosts_root`)."""


def hosts_root(state_dir: Path) -> Path:
    """A short folder in /tmp for the hosts' disks, noted in ``state_dir/hosts-root`` so the
    next run removes it if this one is killed. Not under the state dir: a PostgreSQL socket
    lives inside a host's data folder, and socket paths hold at most 107 characters, which a
    clone in a deep folder would exceed."""
    root = Path(tempfile.mkdtemp(prefix=HOSTS_ROOT_PREFIX, dir="/tmp"))
    root.chmod(0o755)  # the postgres user must reach the servers' folders
    (state_dir / "hosts-root").write_text(f"{root}\n")
    return root


def _passphrase() -> Path:
    passphrase = REPO_ROOT / ".state" / "pulumi-passphrase"
    if not passphrase.exists():
        raise RuntimeError(f"{passphrase} is missing: run `make setup`")
    return passphrase


MARKER = ".shadowshift-demo"


def remove_fleets_under(root: Path) -> list[str]:
    """Remove the hosts of every fleet a previous, killed run made under ``root`` (its
    agents, PostgreSQL servers and gateway die with them); what was removed."""
    removed: list[str] = []
    fleets = {(record.fleet, record.index) for record in records.hosts()
              if Path(record.state_dir).is_relative_to(root)}
    for fleet, index in sorted(fleets):
        with suppress(Exception):
            TemporalGateway(root / f"{fleet}-gateway", "", 0, "", 0).stop()
        removed += cleanup.remove_fleet(fleet, index=index)
    return removed


def _remove_hosts_root(state_dir: Path) -> None:
    """Remove the hosts (and their folder) a previous run noted in ``state_dir``."""
    try:
        root = Path((state_dir / "hosts-root").read_text().strip())
    except OSError:
        return
    # Only a folder :func:`hosts_root` makes: the note could have been edited.
    if root.parent == Path("/tmp") and root.name.startswith(HOSTS_ROOT_PREFIX):
        remove_fleets_under(root)
        shutil.rmtree(root, ignore_errors=True)


def fresh_state_dir(state_dir: Path, *, owned: bool = False) -> Path:
    """Empty ``state_dir`` after removing the hosts (and everything running in them) and the
    router a previous, killed run left there.

    Raises:
        RuntimeError: the folder holds files and was not made by the demo (no marker file,
            and not ``owned`` like the default ``.state/demo``), so it is left alone.
    """
    made_by_demo = owned or (state_dir / MARKER).exists()
    if state_dir.is_dir() and any(state_dir.iterdir()) and not made_by_demo:
        raise RuntimeError(f"{state_dir} is not empty and was not made by the demo; "
                           "choose another --state-dir")
    _remove_hosts_root(state_dir)
    remove_fleets_under(state_dir)
    with suppress(Exception):
        HAProxyManager(state_dir / "haproxy").stop()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True, mode=0o755)
    (state_dir / MARKER).touch()
    return state_dir
