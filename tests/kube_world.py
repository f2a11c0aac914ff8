"""A real Kubernetes control plane on loopback for the whole session, with two fake nodes in two
zones and the Gateway API CRDs installed (issue 21). The fixtures are registered by the root
``conftest.py``, so every test directory shares the session's one control plane.

``make test`` starts the toolchain's build in the background
(``scripts/kube-tools-background.sh``) and runs these tests last: on a fresh machine they wait
for that build (:func:`built`), and fail if it failed. Run on their own without a build in
progress and without the binaries, they skip, naming ``make kube-tools``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from infra.kubernetes.api import KubeApi, resource_path
from infra.kubernetes.cluster import LoopbackCluster
from infra.kubernetes.manifests import install_crds
from infra.kubernetes.nodes import ZONE_LABEL, register_fake_node
from infra.kubernetes.toolchain import ToolchainMissingError, find_toolchain
from workers.kube_lab import ensure_namespace
from workers.settings import REPO_ROOT

T = TypeVar("T")
BUILD_STATE = REPO_ROOT / ".state"
"""Where ``scripts/kube-tools-background.sh`` keeps ``kube-tools.{pid,rc,log}``."""
BUILD_WAIT_S = 80 * 60.0
"""Longest wait for the background build (about 40 minutes of one core on a fresh machine)."""


def built(find: Callable[[], T]) -> T:
    """``find()``'s artefact, waiting while ``make test``'s background build makes it.

    Fails the test when that build failed or overran :data:`BUILD_WAIT_S`; skips (naming
    ``make kube-tools``) when the artefact is missing and no build is in progress.
    """
    deadline = time.monotonic() + BUILD_WAIT_S
    while True:
        try:
            return find()
        except ToolchainMissingError as err:
            missing = err
        rc_file, log = BUILD_STATE / "kube-tools.rc", BUILD_STATE / "kube-tools.log"
        if rc_file.exists():
            rc = rc_file.read_text().strip()
            if rc != "0":
                pytest.fail(f"the background `make kube-tools` failed (exit {rc}); see {log}")
            pytest.fail(f"the background `make kube-tools` finished but {missing}")
        if not _building():
            pytest.skip(str(missing))
        if time.monotonic() > deadline:
            pytest.fail(f"the background `make kube-tools` ran over {BUILD_WAIT_S / 60:.0f} "
                        f"minutes; see {log}")
        time.sleep(5)


def _building() -> bool:
    try:
        os.kill(int((BUILD_STATE / "kube-tools.pid").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True

POOL_LABEL = "shadowshift.io/test-pool"
"""Marks the session's two nodes, so a test can keep its pods on them even if another test
adds nodes of its own."""


@dataclass(frozen=True)
class KubeWorld:
    """The session's control plane and what the fixture put into it."""

    cluster: LoopbackCluster
    """The running control plane."""
    api: KubeApi
    """An admin client of it."""
    node_zones: dict[str, str]
    """Fake node name -> its zone (two nodes, two zones)."""
    pool: str
    """Value of :data:`POOL_LABEL` on those nodes."""


@pytest.fixture(scope="session")
def kube_world() -> Iterator[KubeWorld]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK on loopback; two
    Ready nodes in zones ``zone-a`` and ``zone-b``; the Gateway API standard CRDs."""
    toolchain = built(find_toolchain)
    with LoopbackCluster(toolchain) as cluster:
        api = cluster.api()
        install_crds(api, toolchain.gateway_api_crd_files)
        pool = "two-zones"
        node_zones = {"kwok-zone-a": "zone-a", "kwok-zone-b": "zone-b"}
        for name, zone in node_zones.items():
            register_fake_node(api, name, labels={ZONE_LABEL: zone, POOL_LABEL: pool})
        yield KubeWorld(cluster=cluster, api=api, node_zones=node_zones, pool=pool)


@pytest.fixture
def namespace(kube_world: KubeWorld) -> Iterator[str]:
    """A namespace of the test's own, ready for pods (its ``default`` ServiceAccount, which
    the controller-manager adds, exists), deleted afterwards with everything in it."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    ensure_namespace(kube_world.api, name)
    yield name
    kube_world.api.delete(resource_path("v1", "namespaces", name=name))
