"""TLS to Temporal against a real TLS endpoint: the dev server behind HAProxy terminating TLS
(``tests/workers/tls_lab.py``), once verifying client certificates (mutual TLS) and once not.

Every path that connects a client is exercised with its ``SHADOWSHIFT_TEMPORAL_TLS_*``
settings: the worker process, the node agent, the ``shadowshift`` CLI, the health check and
the task runner; refusals are the proxy's (a real TLS handshake), and each says which setting
to change.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.agent_tasks import AgentHello, AgentTask
from contracts.version import VERSION
from infra.local.ports import free_port
from tests.agent.conftest import agents_under, new_host
from tests.conftest import polled, worker_env
from tests.workers.tls_lab import CertificateAuthority, Issued, TlsProxy, handshake_refused
from workers.settings import REPO_ROOT, Settings, load_settings
from workers.task_runner import TaskRunner
from workers.temporal_tls import tls_config

pytestmark = pytest.mark.integration

UNKNOWN_INSTANCE = 4
"""``shadowshift status`` of an instance nobody protects: it connected, asked and was told."""


@dataclass(frozen=True)
class Pki:
    """The lab's CA and certificates, and a stranger CA nobody trusts."""

    ca: CertificateAuthority
    """Signs the proxy's server certificate and the clients the proxy accepts."""
    server: Issued
    """The proxy's certificate: ``localhost`` and ``127.0.0.1``."""
    worker: Issued
    """The control worker's (and CLI's) client certificate."""
    stranger: Issued
    """A client certificate with the worker's name, from a CA the proxy does not trust."""
    stranger_ca: Path
    """That CA's certificate."""

    def agent(self, host: str) -> Issued:
        """A node agent's own client certificate: CN and DNS name = its host."""
        return self.ca.issue(host, dns=[host])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made for this module's tests."""
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(folder / "ca")
    stranger_ca = CertificateAuthority(folder / "stranger", "Stranger CA")
    return Pki(ca=ca,
               server=ca.issue("temporal", dns=["localhost"], ips=["127.0.0.1"], server=True),
               worker=ca.issue("shadowshift-worker"),
               stranger=stranger_ca.issue("shadowshift-worker"),
               stranger_ca=stranger_ca.cert_file)


@dataclass(frozen=True)
class Endpoints:
    """Where the tests connect."""

    mutual: TlsProxy
    """TLS, client certificate from the lab CA required."""
    server_only: TlsProxy
    """TLS, no client certificate asked for."""
    plaintext: str
    """The dev server itself."""


@pytest.fixture(scope="module")
def endpoints(temporal_env: WorkflowEnvironment, pki: Pki,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """Two HAProxy TLS fronts of the session's dev server."""
    folder = tmp_path_factory.mktemp("proxy")
    upstream = temporal_env.client.service_client.config.target_host
    mutual = TlsProxy(folder, server=pki.server, client_ca=pki.ca.cert_file, upstream=upstream)
    server_only = TlsProxy(folder, server=pki.server, client_ca=pki.ca.cert_file,
                           upstream=upstream, verify_clients=False)
    try:
        yield Endpoints(mutual.start(), server_only.start(), upstream)
    finally:
        mutual.stop()
        server_only.stop()


def tls_env(pki: Pki, address: str, *, cert: Issued | None = None, ca: Path | None = None,
            **variables: str) -> dict[str, str]:
    """``SHADOWSHIFT_*`` variables for ``address``: the lab CA (or ``ca``), ``cert`` as the
    client certificate when given, and any other variables."""
    env = {"SHADOWSHIFT_TEMPORAL_ADDRESS": address,
           "SHADOWSHIFT_TEMPORAL_TLS_CA": str(ca or pki.ca.cert_file), **variables}
    if cert is not None:
        env.update(SHADOWSHIFT_TEMPORAL_TLS_CERT=str(cert.cert),
                   SHADOWSHIFT_TEMPORAL_TLS_KEY=str(cert.key))
    return env


async def shadowshift(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``shadowshift`` CLI with only ``env``'s ``SHADOWSHIFT_*`` variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWSHIFT_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", *args, cwd=REPO_ROOT, env=clean | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return subprocess.CompletedProcess(list(args), process.returncode or 0, out.decode(),
                                       err.decode())


async def status_of_nobody(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``shadowshift status`` of an unknown instance: exit 4 once connected."""
    return await shadowshift(env, "status", f"nobody-{uuid.uuid4().hex[:6]}",
                             "--connect-timeout", "20")


async def test_the_cli_connects_with_mutual_tls(pki: Pki, endpoints: Endpoints) -> None:
    """With the lab CA and a client certificate the CLI gets through the verifying proxy and
    asks its question (an unknown instance: exit 4, not 2 or 3)."""
    done = await status_of_nobody(tls_env(pki, endpoints.mutual.address, cert=pki.worker))
    assert done.returncode == UNKNOWN_INSTANCE, done.stderr
    assert "unknown instance" in done.stderr


async def test_without_a_client_certificate_mutual_tls_refuses(pki: Pki,
                                                               endpoints: Endpoints) -> None:
    """The proxy refuses a client that presents no certificate; the CLI says a client
    certificate is required and which variables give one (exit 2: a setting to change)."""
    assert "certificate required" in str(
        handshake_refused(endpoints.mutual.address, pki.ca.cert_file, None))
    done = await status_of_nobody(tls_env(pki, endpoints.mutual.address))
    assert done.returncode == 2, done.stderr
    # The refusal arrives as the alert (CertificateRequired) or as a closed connection.
    assert "requires a client certificate (mutual TLS)" in done.stderr
    assert "set SHADOWSHIFT_TEMPORAL_TLS_CERT and SHADOWSHIFT_TEMPORAL_TLS_KEY" in done.stderr
    assert done.stderr.strip().count("\n") == 0


async def test_a_certificate_from_another_ca_is_refused(pki: Pki,
                                                        endpoints: Endpoints) -> None:
    """A client certificate the proxy's CA did not sign is refused by the handshake, and the
    message points at the certificate's CA."""
    assert handshake_refused(endpoints.mutual.address, pki.ca.cert_file, pki.stranger)
    assert handshake_refused(endpoints.mutual.address, pki.ca.cert_file, pki.worker) is None
    done = await status_of_nobody(tls_env(pki, endpoints.mutual.address, cert=pki.stranger))
    assert done.returncode == 2, done.stderr
    # The refusal arrives as the alert (UnknownCA) or as a closed connection, as it happens.
    assert "the server refused our client certificate (" in done.stderr
    assert str(pki.stranger.cert) in done.stderr


async def test_server_only_tls_works_with_just_the_ca(pki: Pki, endpoints: Endpoints) -> None:
    """Against a TLS server that asks for no client certificate the CA alone suffices; in
    plaintext the same endpoint closes the connection, and we say TLS may be needed."""
    done = await status_of_nobody(tls_env(pki, endpoints.server_only.address))
    assert done.returncode == UNKNOWN_INSTANCE, done.stderr
    plain = await status_of_nobody({"SHADOWSHIFT_TEMPORAL_ADDRESS":
                                    endpoints.server_only.address})
    assert plain.returncode == 2, plain.stderr
    assert "if it requires TLS, set SHADOWSHIFT_TEMPORAL_TLS_CA" in plain.stderr


async def test_a_server_name_the_certificate_lacks_is_refused_at_connect(
        pki: Pki, endpoints: Endpoints) -> None:
    """The server's certificate names ``localhost`` and ``127.0.0.1``: another server name
    fails the handshake, and the message lists the names it has; a name it has works."""
    wrong = tls_env(pki, endpoints.server_only.address,
                    SHADOWSHIFT_TEMPORAL_TLS_SERVER_NAME="temporal.example.com")
    done = await status_of_nobody(wrong)
    assert done.returncode == 2, done.stderr
    assert ("the server's certificate is not valid for 'temporal.example.com' (it names "
            "localhost, 127.0.0.1); set SHADOWSHIFT_TEMPORAL_TLS_SERVER_NAME") in done.stderr
    right = tls_env(pki, endpoints.server_only.address,
                    SHADOWSHIFT_TEMPORAL_TLS_SERVER_NAME="localhost")
    assert (await status_of_nobody(right)).returncode == UNKNOWN_INSTANCE


async def test_a_server_certificate_from_another_ca_is_refused(pki: Pki,
                                                               endpoints: Endpoints) -> None:
    """Trusting the wrong CA, the client refuses the server (not the other way round), and
    says which CA file to change."""
    done = await status_of_nobody(tls_env(pki, endpoints.mutual.address, cert=pki.worker,
                                          ca=pki.stranger_ca))
    assert done.returncode == 2, done.stderr
    assert f"is not signed by the CA in SHADOWSHIFT_TEMPORAL_TLS_CA ({pki.stranger_ca})" \
        in done.stderr


async def test_tls_to_a_plaintext_server_is_named(pki: Pki, endpoints: Endpoints) -> None:
    """TLS settings pointed at the plaintext dev server: it does not speak TLS there."""
    done = await status_of_nobody(tls_env(pki, endpoints.plaintext))
    assert done.returncode == 2, done.stderr
    assert "the server does not speak TLS at that address" in done.stderr


async def test_a_bad_certificate_stops_the_cli_before_connecting(pki: Pki,
                                                                 endpoints: Endpoints) -> None:
    """Start-up validation reaches the CLI: a key that is not the certificate's is refused
    with exit 2 naming the variable, before any connection."""
    env = tls_env(pki, endpoints.mutual.address, cert=pki.worker)
    env["SHADOWSHIFT_TEMPORAL_TLS_KEY"] = str(pki.stranger.key)
    done = await status_of_nobody(env)
    assert done.returncode == 2
    assert done.stderr.startswith("shadowshift: error: SHADOWSHIFT_TEMPORAL_TLS_KEY: the key in")


async def test_an_agent_task_runs_over_mutual_tls_end_to_end(
        temporal_env: WorkflowEnvironment, pki: Pki, endpoints: Endpoints,
        tmp_path: Path) -> None:
    """A node agent with its own certificate and a task runner with the worker's both poll
    through the verifying proxy; a workflow started there routes a task to the agent and
    returns the agent's answer."""
    host = new_host()
    agent_cert = pki.agent(host)
    runner_settings = load_settings(tls_env(pki, endpoints.mutual.address, cert=pki.worker),
                                    worker=False)
    with agents_under(temporal_env, tmp_path) as agents:
        agent = await agents.start(host, env=tls_env(pki, endpoints.mutual.address,
                                                     cert=agent_cert))
        assert f"over mutual TLS as CN={host}" in agent.log_text()
        runner = TaskRunner(endpoints.mutual.address, tls=tls_config(runner_settings)).start()
        try:
            info = runner.run(AgentTask(host=host, hello=AgentHello(version=VERSION)))
        finally:
            runner.close()
    assert info["host"] == host  # the agent's AgentInfo (the runner returns it untyped)


async def test_an_agent_with_another_hosts_certificate_does_not_start(
        temporal_env: WorkflowEnvironment, pki: Pki, endpoints: Endpoints,
        tmp_path: Path) -> None:
    """An agent for one host given another host's certificate refuses to start (exit 2), names
    both, and leaves no data root behind; the proxy would have let it in."""
    host, other = new_host(), new_host()
    with agents_under(temporal_env, tmp_path) as agents:
        agent = agents.launch(host, env=tls_env(pki, endpoints.mutual.address,
                                                cert=pki.agent(other)))
        assert agent.process.wait(timeout=60) == 2
    log = agent.log_text()
    assert f"is the certificate of CN={other} (names: {other}), not of host {host}" in log
    assert not agent.data_root.exists()


async def test_the_worker_polls_over_mutual_tls(
        temporal_env: WorkflowEnvironment, pki: Pki, endpoints: Endpoints,
        settings: Settings, task_queue: str) -> None:
    """``python -m workers.main`` with the TLS settings polls its queue through the verifying
    proxy and says so in its log; the container health check, with the same settings, reaches
    Temporal over the same TLS (and without them, does not)."""
    env = worker_env(settings, SHADOWSHIFT_TASK_QUEUE=task_queue,
                     SHADOWSHIFT_PROMETHEUS_PORT=str(free_port()),
                     **tls_env(pki, endpoints.mutual.address, cert=pki.worker))
    started = time.time()
    worker = subprocess.Popen([sys.executable, "-m", "workers.main"], cwd=REPO_ROOT, env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        await polled(temporal_env.client, task_queue, activities=False, timeout_s=60,
                     since=started)
        healthy = await _health(env)
        plain = {k: v for k, v in env.items() if not k.startswith("SHADOWSHIFT_TEMPORAL_TLS")}
        unhealthy = await _health(plain)
        worker.terminate()
        assert worker.wait(timeout=60) == 0
        assert worker.stderr is not None
        log = worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
    assert "over mutual TLS as CN=shadowshift-worker" in log
    assert healthy.returncode == 0, healthy.stderr
    assert unhealthy.returncode == 1
    assert f"Temporal at {endpoints.mutual.address} does not answer" in unhealthy.stderr


async def _health(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.health", cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return subprocess.CompletedProcess([], process.returncode or 0, out.decode(), err.decode())


def test_an_expired_certificate_stops_the_worker_with_one_line(
        pki: Pki, endpoints: Endpoints, settings: Settings) -> None:
    """The worker validates its certificate at start-up: expired, it exits 2 with one line
    naming the variable, without trying the server."""
    now = datetime.datetime.now(datetime.UTC)
    expired = pki.ca.issue("lapsed", not_before=now - datetime.timedelta(days=9),
                           not_after=now - datetime.timedelta(days=1))
    env = worker_env(settings, **tls_env(pki, endpoints.mutual.address, cert=expired))
    done = subprocess.run([sys.executable, "-m", "workers.main"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("shadowshift-worker: SHADOWSHIFT_TEMPORAL_TLS_CERT: the "
                                  "client certificate CN=lapsed")
    assert "expired on" in done.stderr


async def test_an_expired_server_certificate_is_named(
        temporal_env: WorkflowEnvironment, pki: Pki, tmp_path: Path) -> None:
    """A TLS front whose own certificate has expired is refused by the client, and the
    message says it is the server's certificate, not ours."""
    now = datetime.datetime.now(datetime.UTC)
    lapsed = pki.ca.issue("temporal", dns=["localhost"], ips=["127.0.0.1"], server=True,
                          not_before=now - datetime.timedelta(days=9),
                          not_after=now - datetime.timedelta(days=1), file_name="lapsed")
    proxy = TlsProxy(tmp_path, server=lapsed, client_ca=pki.ca.cert_file,
                     upstream=temporal_env.client.service_client.config.target_host,
                     verify_clients=False).start()
    try:
        done = await status_of_nobody(tls_env(pki, proxy.address))
    finally:
        proxy.stop()
    assert done.returncode == 2, done.stderr
    assert "the server's certificate has expired" in done.stderr
