"""The Kubernetes tests' fixtures live in :mod:`tests.kube_world` (registered by the root
``conftest.py``, so the conformance suite shares the session's one control plane); these names
are re-exported for the test modules that import them from here."""

from tests.kube_world import POOL_LABEL, KubeWorld, built

__all__ = ["POOL_LABEL", "KubeWorld", "built"]
