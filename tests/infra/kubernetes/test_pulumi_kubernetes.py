"""pulumi-kubernetes through our Automation API driver, against the loopback control plane,
with the provider plugin ``make kube-tools`` builds (automatic plugin downloads are off)."""

from __future__ import annotations

import json
from importlib import resources

import pulumi
import pulumi_kubernetes as k8s
import pytest

from infra.kubernetes.api import resource_path
from infra.kubernetes.toolchain import find_provider_plugin
from infra.pulumi_engine import StackDriver
from tests.infra.kubernetes.conftest import KubeWorld, built


def _sdk_plugin_version() -> str:
    """The plugin version the installed Python SDK asks the engine for."""
    manifest = resources.files("pulumi_kubernetes").joinpath("pulumi-plugin.json")
    return str(json.loads(manifest.read_text())["version"])


def test_inline_program_creates_and_destroys_a_config_map(
        kube_world: KubeWorld, namespace: str, stack_driver: StackDriver) -> None:
    """An inline program with an explicit provider on the cluster's kubeconfig creates a
    ConfigMap the API server then serves; destroy deletes it and the stack."""
    plugin = built(find_provider_plugin)
    if _sdk_plugin_version() != plugin.version:
        pytest.fail(f"pulumi_kubernetes asks for plugin {_sdk_plugin_version()} but "
                    f"{plugin.path} is {plugin.version}: run `make setup` (pyproject pins the "
                    "SDK that matches the plugin)")
    kubeconfig = kube_world.cluster.kubeconfig.read_text()

    def program() -> None:
        provider = k8s.Provider("loopback", kubeconfig=kubeconfig)
        settings = k8s.core.v1.ConfigMap(
            "settings",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="shadowshift-settings",
                                                namespace=namespace),
            data={"role": "shadow"},
            opts=pulumi.ResourceOptions(provider=provider),
        )
        pulumi.export("uid", settings.metadata.uid)

    stack = f"kube-configmap-{namespace}"
    created = stack_driver.up(stack, program)
    path = resource_path("v1", "configmaps", namespace=namespace, name="shadowshift-settings")
    served = kube_world.api.get(path)
    assert served["data"] == {"role": "shadow"}
    assert served["metadata"]["uid"] == created.outputs["uid"]

    assert stack_driver.destroy(stack, program) is True
    assert kube_world.api.find(path) is None
