"""Where the Kubernetes binaries and data built by ``make kube-tools`` are.

``scripts/build-kube.sh`` builds each artefact once per version into ``~/.cache/shadowshift`` and
links it into ``.tools/bin`` (programs) and ``.tools/share`` (KWOK stage files, Gateway API
CRDs). This module only looks them up, so a caller learns in one message what is missing and
how to get it, instead of a control plane failing half-started.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOOLS_DIR = REPO_ROOT / ".tools"

BUILD_HINT = "run `make kube-tools` (about 40 minutes on a fresh machine, then cached)"

KWOK_FAST_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
"""KWOK's ``fast`` stage set (``kustomize/stage/fast``): nodes become Ready at once and keep a
lease, pods go Running at once and disappear when deleted. Without stages KWOK does nothing."""


class ToolchainMissingError(InfraError):
    """Some binary or data directory of the Kubernetes toolchain has not been built."""


@dataclass(frozen=True)
class KubeToolchain:
    """Paths of everything a loopback control plane and the Kubernetes platform run."""

    kube_apiserver: Path
    """The API server."""
    kube_controller_manager: Path
    """Runs the controllers a real cluster relies on: EndpointSlices for selector Services,
    the ``default`` ServiceAccount of each namespace, StatefulSets, garbage collection,
    namespace deletion, node lifecycle taints, PodDisruptionBudget status."""
    kube_scheduler: Path
    """Places pods on nodes, so anti-affinity is decided by the real scheduler."""
    etcd: Path
    """The API server's storage."""
    kwok: Path
    """Plays kubelet for fake nodes: Ready nodes, Running pods, no container runtime."""
    kwok_stage_dir: Path
    """KWOK's stage files (the module's ``kustomize/stage``)."""
    gateway_api_crds_dir: Path
    """The Gateway API standard-channel CRDs (``config/crd/standard``)."""

    @property
    def kwok_stage_files(self) -> list[Path]:
        """The stage files KWOK is started with (:data:`KWOK_FAST_STAGES`)."""
        return [self.kwok_stage_dir / name for name in KWOK_FAST_STAGES]

    @property
    def gateway_api_crd_files(self) -> list[Path]:
        """Every CRD manifest of the Gateway API standard channel, in name order."""
        return sorted(self.gateway_api_crds_dir.glob("*.yaml"))


@dataclass(frozen=True)
class ProviderPlugin:
    """The Pulumi Kubernetes provider plugin as built by ``make kube-tools``."""

    path: Path
    """``pulumi-resource-kubernetes`` in ``.tools/bin``, where the Pulumi CLI finds it on
    ``PATH`` (automatic plugin downloads are off in this project)."""
    version: str
    """Its version, read from the cache file it links to (``...-v4.25.0``). The Python SDK
    asks for exactly one plugin version; the two must match."""


def find_toolchain(tools_dir: Path | None = None) -> KubeToolchain:
    """The control plane's toolchain under ``tools_dir`` (default: the repository's
    ``.tools``).

    Raises:
        ToolchainMissingError: something is not built; the message lists what and says how.
    """
    bin_dir, share_dir = _tools_dir(tools_dir) / "bin", _tools_dir(tools_dir) / "share"
    toolchain = KubeToolchain(
        kube_apiserver=bin_dir / "kube-apiserver",
        kube_controller_manager=bin_dir / "kube-controller-manager",
        kube_scheduler=bin_dir / "kube-scheduler",
        etcd=bin_dir / "etcd",
        kwok=bin_dir / "kwok",
        kwok_stage_dir=share_dir / "kwok-stage",
        gateway_api_crds_dir=share_dir / "gateway-api-crds",
    )
    programs = [
        toolchain.kube_apiserver, toolchain.kube_controller_manager, toolchain.kube_scheduler,
        toolchain.etcd, toolchain.kwok,
    ]
    missing = [str(p) for p in programs if not os.access(p, os.X_OK)]
    missing += [str(p) for p in toolchain.kwok_stage_files if not p.is_file()]
    if not toolchain.gateway_api_crd_files:
        missing.append(f"{toolchain.gateway_api_crds_dir}/*.yaml")
    if missing:
        raise ToolchainMissingError(
            f"the Kubernetes toolchain is incomplete ({', '.join(missing)}): {BUILD_HINT}"
        )
    return toolchain


def find_provider_plugin(tools_dir: Path | None = None) -> ProviderPlugin:
    """The ``pulumi-resource-kubernetes`` plugin under ``tools_dir`` (default ``.tools``).

    Raises:
        ToolchainMissingError: it has not been built.
    """
    path = _tools_dir(tools_dir) / "bin" / "pulumi-resource-kubernetes"
    if not os.access(path, os.X_OK):
        raise ToolchainMissingError(f"{path} is missing: {BUILD_HINT}")
    _, sep, version = path.resolve().name.rpartition("-v")
    if not sep:
        raise ToolchainMissingError(
            f"{path} is not a build of `make kube-tools` (no version in its name): {BUILD_HINT}"
        )
    return ProviderPlugin(path=path, version=version)


def _tools_dir(tools_dir: Path | None) -> Path:
    return tools_dir or DEFAULT_TOOLS_DIR
