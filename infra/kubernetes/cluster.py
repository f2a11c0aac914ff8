"""A real Kubernetes control plane on loopback, from the binaries ``make kube-tools`` builds.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK run as plain child
processes on free loopback ports, with a throwaway CA (:mod:`.pki`) and a kubeconfig. Nothing is
mocked: objects go through the real API server's validation and admission, the real scheduler
places pods, the real controllers maintain EndpointSlices and ServiceAccounts. KWOK stands in for
kubelets, so nodes are Ready and pods Running but no container runs (there is no runtime here).

It lives in ``infra`` rather than under ``tests`` because tests, benchmarks (cutover figures
through the Kubernetes path) and demos all start it, and ``bench`` cannot import ``tests``.

Processes are tied to the *thread* that starts the cluster (``setpriv --pdeathsig``, where the
system has it): start it from a long-lived thread (pytest's main thread, a bench's main), not a
worker thread that ends, or the control plane dies with that thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from infra.errors import InfraError
from infra.kubernetes.api import KubeApi, KubeCredentials, poll_until, resource_path
from infra.kubernetes.pki import (
    SERVICE_CLUSTER_IP_RANGE,
    CertPair,
    ClusterPki,
    issue_client_cert,
    make_cluster_pki,
)
from infra.kubernetes.toolchain import KubeToolchain
from infra.local.ports import free_ports
from infra.pulumi_engine import launch_support

log = logging.getLogger(__name__)

KWOK_POD_CIDR = "10.244.0.0/16"
"""Where KWOK takes pod IPs from: away from the Service range, like a real cluster's."""


class ClusterStartError(InfraError):
    """A component of the control plane exited or never became ready; the message carries the
    tail of its log."""


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """How a loopback control plane is run."""

    start_timeout_s: float = 120.0
    """Bound on each readiness wait (generous: the machine may be busy with builds)."""
    stop_timeout_s: float = 20.0
    """How long each process gets to exit on SIGTERM before SIGKILL."""
    port_attempts: int = 3
    """Fresh port sets to try when a port chosen free was taken before a server bound it."""


@dataclass(frozen=True)
class _Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


@dataclass
class _Component:
    """One running process of the control plane."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path


@dataclass
class LoopbackCluster:
    """One control plane; :meth:`start` it, use :attr:`kubeconfig` or :meth:`api`, then
    :meth:`stop` (or use it as a context manager). Stopping leaves no process and no file."""

    toolchain: KubeToolchain
    config: ClusterConfig = field(default_factory=ClusterConfig)
    work_dir: Path | None = None
    """Where certificates, etcd data, logs and the kubeconfig go; a temporary folder, removed
    on stop, when ``None``."""
    started_in_s: float | None = field(default=None, init=False)
    """Seconds from :meth:`start` to every component ready (``None`` before)."""
    _components: list[_Component] = field(default_factory=list, init=False)
    _owned_dir: bool = field(default=False, init=False)
    _credentials: KubeCredentials | None = field(default=None, init=False)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start every component and return once each is ready and the controllers work.

        Raises:
            ClusterStartError: a component exited or did not become ready in time (everything
                started so far is stopped again).
        """
        began = time.monotonic()
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="shadowshift-kube-"))
            self._owned_dir = True
        pki = make_cluster_pki(self.work_dir / "pki")
        for attempt in range(1, self.config.port_attempts + 1):
            try:
                self._start_components(pki, _Ports(*free_ports(6)))
                break
            except ClusterStartError as err:
                self._stop_components()
                if "address already in use" in str(err) and attempt < self.config.port_attempts:
                    log.warning("A port chosen free was taken (%s). Trying other ports.", err)
                    continue
                self.stop()
                raise
            except BaseException:  # interrupted, or a bug: leave nothing running either way
                self.stop()
                raise
        self.started_in_s = time.monotonic() - began
        log.info("Loopback Kubernetes ready at %s in %.1f s.", self.server, self.started_in_s)

    def stop(self) -> None:
        """Stop every process (API server before etcd: it hangs on SIGTERM without its store)
        and remove the work dir if this cluster made it. Safe to call twice."""
        self._stop_components()
        self._remove_work_dir()

    def __enter__(self) -> LoopbackCluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- what callers use ----------------------------------------------------------------------

    @property
    def credentials(self) -> KubeCredentials:
        """Server address and admin client certificate."""
        if self._credentials is None:
            raise InfraError("the cluster is not started")
        return self._credentials

    @property
    def server(self) -> str:
        """``https://127.0.0.1:<port>`` of the API server."""
        return self.credentials.server

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig file for the admin identity (for Pulumi, ``kubectl``, KWOK)."""
        assert self.work_dir is not None
        return self.work_dir / "kubeconfig"

    def api(self) -> KubeApi:
        """A client of the API server as the admin."""
        return KubeApi(self.credentials)

    def user_kubeconfig(self, user: str) -> Path:
        """A kubeconfig for ``user``, a client certificate of the cluster's CA with no group:
        it may do exactly what RBAC binds to that name (nothing, until bound)."""
        assert self.work_dir is not None
        creds = self.credentials
        ca = CertPair(cert=creds.ca_file, key=creds.ca_file.with_suffix(".key"))
        pair = issue_client_cert(ca, self.work_dir / "pki" / f"user-{user}", user)
        path = self.work_dir / f"kubeconfig-{user}"
        self._write_kubeconfig(path, KubeCredentials(creds.server, creds.ca_file, pair.cert,
                                                     pair.key), user)
        return path

    def pids(self) -> dict[str, int]:
        """Process id of each running component, by name."""
        return {c.name: c.process.pid for c in self._components if c.process.poll() is None}

    def resident_bytes(self) -> dict[str, int]:
        """Resident memory of each running component, by name."""
        sizes = {}
        for name, pid in self.pids().items():
            with contextlib.suppress(psutil.Error):
                sizes[name] = psutil.Process(pid).memory_info().rss
        return sizes

    # -- internals -----------------------------------------------------------------------------

    def _start_components(self, pki: ClusterPki, ports: _Ports) -> None:
        assert self.work_dir is not None
        tools, wait = self.toolchain, self.config.start_timeout_s
        self._credentials = KubeCredentials(
            server=f"https://127.0.0.1:{ports.apiserver}",
            ca_file=pki.ca.cert, cert_file=pki.admin.cert, key_file=pki.admin.key,
        )
        self._write_kubeconfig(self.kubeconfig, self.credentials, "admin")
        kubeconfig = str(self.kubeconfig)
        etcd_dir = self.work_dir / "etcd"
        shutil.rmtree(etcd_dir, ignore_errors=True)  # a previous attempt's, on other ports

        etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
        etcd = self._launch("etcd", [
            str(tools.etcd), "--name=loopback", f"--data-dir={etcd_dir}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=loopback={peer_url}", "--log-level=warn",
            # A throwaway store on a disk other tests share: fsync buys nothing and costs
            # seconds per write burst.
            "--unsafe-no-fsync",
        ])
        self._await(etcd, lambda: _http_ok(f"{etcd_url}/health"), wait)

        apiserver = self._launch("kube-apiserver", [
            str(tools.kube_apiserver), f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            # The default reconciler keeps the `kubernetes` Service's endpoints pointing at the
            # advertise address and refuses loopback ones; nothing in-cluster needs them here.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=RBAC", "--profiling=false",
        ])
        api = self.api()
        self._await(apiserver, api.healthy, wait)

        serving = [f"--tls-cert-file={pki.apiserver.cert}",
                   f"--tls-private-key-file={pki.apiserver.key}"]
        delegated = [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                     f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
                     "--leader-elect=false", "--profiling=false", *serving]
        controllers = self._launch("kube-controller-manager", [
            str(tools.kube_controller_manager), *delegated,
            f"--secure-port={ports.controller_manager}",
            # Published to every namespace as kube-root-ca.crt, which pods use to trust the
            # API server. (Tokens come from the API server's TokenRequest, so the legacy
            # --service-account-private-key-file is not needed.)
            f"--root-ca-file={pki.ca.cert}",
        ])
        scheduler = self._launch("kube-scheduler", [
            str(tools.kube_scheduler), *delegated, f"--secure-port={ports.scheduler}",
        ])
        kwok_config = self.work_dir / "kwok-stages.yaml"
        kwok_config.write_text("\n---\n".join(p.read_text() for p in tools.kwok_stage_files))
        kwok = self._launch("kwok", [
            str(tools.kwok), f"--kubeconfig={kubeconfig}", f"--config={kwok_config}",
            "--manage-all-nodes=true", f"--server-address=127.0.0.1:{ports.kwok}",
            f"--cidr={KWOK_POD_CIDR}",
            # The heartbeat stage updates a node's status only every 10-20 minutes and counts
            # on a lease for liveness; without KWOK renewing one, the node lifecycle controller
            # sees every node go Unknown after its grace period, marks their pods not ready,
            # and the initialize stage makes the node Ready again: flapping every minute.
            "--node-lease-duration-seconds=40",
        ])
        tls = ssl.create_default_context(cafile=str(pki.ca.cert))
        self._await(controllers, lambda: _http_ok(
            f"https://127.0.0.1:{ports.controller_manager}/healthz", tls), wait)
        self._await(scheduler, lambda: _http_ok(
            f"https://127.0.0.1:{ports.scheduler}/healthz", tls), wait)
        self._await(kwok, lambda: _http_ok(f"http://127.0.0.1:{ports.kwok}/healthz"), wait)
        # Healthy is not yet working: the controllers' caches must sync before, e.g., a
        # namespace gets the `default` ServiceAccount every pod needs. Wait for that proof.
        self._await(controllers, lambda: api.find(
            resource_path("v1", "serviceaccounts", namespace="default", name="default")), wait)

    def _launch(self, name: str, argv: list[str]) -> _Component:
        assert self.work_dir is not None
        log_file = self.work_dir / "logs" / f"{name}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # Die with us: a crashed test session must not leave a control plane behind.
        prefix = ["setpriv", "--pdeathsig", "KILL"] if launch_support().pdeathsig else []
        with log_file.open("ab") as out:
            process = subprocess.Popen([*prefix, *argv], stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=self.work_dir)
        component = _Component(name, process, log_file)
        self._components.append(component)
        return component

    def _await(self, component: _Component, ready: Callable[[], object], timeout_s: float
               ) -> None:
        def ready_or_dead() -> bool:
            if component.process.poll() is not None:
                raise ClusterStartError(
                    f"{component.name} exited with {component.process.returncode}: "
                    f"{_tail(component.log_file)}")
            return bool(ready())

        try:
            poll_until(ready_or_dead, timeout_s=timeout_s, what=f"{component.name} ready")
        except TimeoutError as err:
            raise ClusterStartError(f"{err}; log: {_tail(component.log_file)}") from err

    def _stop_components(self) -> None:
        # Reverse start order: KWOK and the controllers first, then the API server, etcd last.
        while self._components:
            component = self._components.pop()
            _terminate(component.process, self.config.stop_timeout_s)

    def _remove_work_dir(self) -> None:
        if self._owned_dir and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir, self._owned_dir = None, False

    @staticmethod
    def _write_kubeconfig(path: Path, creds: KubeCredentials, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "loopback", "cluster": {
                "server": creds.server, "certificate-authority": str(creds.ca_file)}}],
            "users": [{"name": user, "user": {
                "client-certificate": str(creds.cert_file),
                "client-key": str(creds.key_file)}}],
            "contexts": [{"name": "loopback",
                          "context": {"cluster": "loopback", "user": user}}],
            "current-context": "loopback",
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML


def _terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("Process %s ignored SIGTERM for %.0f s. Killing it.", process.pid, timeout_s)
        process.kill()
        process.wait()


def _http_ok(url: str, tls: ssl.SSLContext | None = None) -> bool:
    """Whether ``url`` answers 200 (health endpoints of etcd, KWOK and the controllers)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=tls) as response:
            return bool(response.status == 200)
    except OSError:  # refused while starting, or a non-2xx answer (HTTPError is an OSError)
        return False


def _tail(log_file: Path, lines: int = 15) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
