"""A real Kubernetes control plane on loopback for the whole session, with two fake nodes in two
zones and the Gateway API CRDs installed (issue 21).

Tests skip, naming ``make kube-tools``, when its binaries have not been built: a fresh build
takes most of an hour, too long to start silently from inside a test run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from infra.kubernetes.api import KubeApi, poll_until, resource_path
from infra.kubernetes.cluster import LoopbackCluster
from infra.kubernetes.manifests import install_crds
from infra.kubernetes.nodes import ZONE_LABEL, register_fake_node
from infra.kubernetes.toolchain import ToolchainMissingError, find_toolchain

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
    try:
        toolchain = find_toolchain()
    except ToolchainMissingError as err:
        pytest.skip(str(err))
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
    path = resource_path("v1", "namespaces", name=name)
    kube_world.api.apply(path, {"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": name}}, field_manager="tests")
    account = resource_path("v1", "serviceaccounts", namespace=name, name="default")
    poll_until(lambda: kube_world.api.find(account), timeout_s=30,
               what=f"ServiceAccount {name}/default")
    yield name
    kube_world.api.delete(path)
