"""Finding the Kubernetes toolchain: a missing build is named, with the command that makes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.kubernetes.api import resource_path
from infra.kubernetes.toolchain import (
    ToolchainMissingError,
    find_provider_plugin,
    find_toolchain,
)


def test_missing_toolchain_names_what_and_make_kube_tools(tmp_path: Path) -> None:
    """Without a build, the error lists the missing binaries and says to run make kube-tools."""
    with pytest.raises(ToolchainMissingError) as missing:
        find_toolchain(tmp_path)
    assert "make kube-tools" in str(missing.value)
    assert "kube-apiserver" in str(missing.value) and "kwok-stage" in str(missing.value)

    with pytest.raises(ToolchainMissingError, match="make kube-tools"):
        find_provider_plugin(tmp_path)


def test_provider_plugin_version_comes_from_its_cache_name(tmp_path: Path) -> None:
    """The plugin in .tools/bin links to ~/.cache/shadowshift/<name>-v<version>; the version
    the Python SDK must ask for is read from that name."""
    cached = tmp_path / "cache" / "pulumi-resource-kubernetes-v4.25.0"
    cached.parent.mkdir()
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pulumi-resource-kubernetes").symlink_to(cached)
    assert find_provider_plugin(tmp_path).version == "4.25.0"


def test_resource_paths_follow_the_api_layout() -> None:
    """Core kinds live under /api, grouped kinds under /apis; namespaced ones under their
    namespace."""
    assert resource_path("v1", "nodes", name="n1") == "/api/v1/nodes/n1"
    assert resource_path("v1", "pods", namespace="ns", name="p", subresource="status") == (
        "/api/v1/namespaces/ns/pods/p/status")
    assert resource_path("gateway.networking.k8s.io/v1", "tcproutes", namespace="ns") == (
        "/apis/gateway.networking.k8s.io/v1/namespaces/ns/tcproutes")
