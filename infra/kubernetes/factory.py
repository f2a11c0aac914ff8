"""Build the kubernetes platform and its fleet observer (registered as ``"kubernetes"`` in
:mod:`infra.factory`)."""

from __future__ import annotations

from pathlib import Path

from contracts.shadow import PlatformRequest
from infra.errors import InvalidRequestError
from infra.kubernetes.api import KubeApi
from infra.kubernetes.kubeconfig import credentials_from_kubeconfig
from infra.kubernetes.observer import KubernetesObserver
from infra.kubernetes.placement import KubeShadowSpec
from infra.kubernetes.platform import KubernetesPlatform
from infra.platform import PlatformContext


def build_kubernetes_platform(request: PlatformRequest,
                              context: PlatformContext) -> KubernetesPlatform:
    """The instance's two pods in the worker's cluster.

    Raises:
        InvalidRequestError: no kubernetes section, or no cluster configured.
    """
    spec = KubeShadowSpec.from_request(request, context.state_dir)
    path = _kubeconfig(context)
    return KubernetesPlatform(spec, KubeApi(credentials_from_kubeconfig(path)),
                              path.read_text(), context.driver)


def build_kubernetes_observer(context: PlatformContext,
                              metrics_period_s: int) -> KubernetesObserver:
    """The watcher's view of this worker's protections on Kubernetes (it reaches the cluster
    at first use: a worker without one serves the other platforms' protections)."""
    return KubernetesObserver(context.state_dir, lambda: KubeApi(
        credentials_from_kubeconfig(_kubeconfig(context))))


def _kubeconfig(context: PlatformContext) -> Path:
    if context.kubeconfig is None:
        raise InvalidRequestError("platform kubernetes needs the worker's cluster: set "
                                  "SHADOWSHIFT_KUBECONFIG to its kubeconfig")
    return context.kubeconfig
