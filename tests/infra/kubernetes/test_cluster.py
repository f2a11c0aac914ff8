"""Starting and stopping the loopback control plane: ready means usable, stopped means gone."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest

from infra.kubernetes import cluster as cluster_module
from infra.kubernetes.cluster import LoopbackCluster
from infra.kubernetes.toolchain import KubeToolchain, find_toolchain
from infra.local.ports import free_ports
from tests.conftest import survivors
from tests.infra.kubernetes.conftest import built

pytestmark = pytest.mark.integration

COMPONENTS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}


@pytest.fixture
def toolchain() -> KubeToolchain:
    """The built toolchain; the test skips, naming make kube-tools, without it."""
    return built(find_toolchain)


def test_stop_leaves_no_process_and_no_file(toolchain: KubeToolchain) -> None:
    """A started cluster answers as the admin through its kubeconfig's credentials; after stop
    none of its five processes runs and its work dir (certificates, etcd data) is gone."""
    cluster = LoopbackCluster(toolchain)
    try:
        cluster.start()
        pids = cluster.pids()
        work_dir = cluster.work_dir
        assert set(pids) == COMPONENTS
        assert cluster.kubeconfig.is_file()
        assert cluster.api().get("/version")["gitVersion"].startswith("v1.37.")
    finally:
        cluster.stop()
    assert isinstance(work_dir, Path) and not work_dir.exists()
    assert survivors([psutil.Process(pid) for pid in pids.values() if psutil.pid_exists(pid)],
                     timeout_s=0) == []
    cluster.stop()  # twice is fine


def test_a_port_taken_after_it_was_chosen_makes_start_try_other_ports(
        toolchain: KubeToolchain, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """When etcd's port, chosen free, is taken before etcd binds it (another test got there
    first), start stops what it started and comes up on fresh ports."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        choices = iter([[taken, *free_ports(5)]])
        monkeypatch.setattr(cluster_module, "free_ports",
                            lambda count: next(choices, None) or free_ports(count))
        with LoopbackCluster(toolchain) as cluster:
            assert cluster.api().healthy()
            assert f":{taken}" not in cluster.server
    assert "Trying other ports" in caplog.text
