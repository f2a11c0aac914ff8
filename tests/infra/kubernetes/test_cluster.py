"""Starting and stopping the loopback control plane: ready means usable, stopped means gone."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from infra.kubernetes.cluster import LoopbackCluster
from infra.kubernetes.toolchain import ToolchainMissingError, find_toolchain
from tests.conftest import survivors

pytestmark = pytest.mark.integration

COMPONENTS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}


def test_stop_leaves_no_process_and_no_file() -> None:
    """A started cluster answers as the admin through its kubeconfig's credentials; after stop
    none of its five processes runs and its work dir (certificates, etcd data) is gone."""
    try:
        toolchain = find_toolchain()
    except ToolchainMissingError as err:
        pytest.skip(str(err))
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
