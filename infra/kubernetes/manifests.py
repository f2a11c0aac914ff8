"""Install YAML manifests (the Gateway API CRDs) into a cluster.

Objects are server-side applied, so installing twice converges instead of failing. Where each
kind lives (its plural, whether it is namespaced) comes from the API server's discovery
documents, not from a table of kinds we would have to keep up to date.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache, partial
from pathlib import Path
from typing import Any

import yaml

from infra.kubernetes.api import KubeApi, KubeObject, poll_until, resource_path

FIELD_MANAGER = "shadowshift"


def load_manifests(files: Iterable[Path]) -> list[KubeObject]:
    """Every object of every YAML file, in order (empty documents skipped)."""
    objects: list[KubeObject] = []
    for path in files:
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def object_path(api: KubeApi, obj: KubeObject) -> str:
    """The URL path of ``obj`` (by its ``apiVersion``, ``kind``, name and namespace)."""
    plural, namespaced = _kinds(api, obj["apiVersion"])[obj["kind"]]
    metadata = obj["metadata"]
    namespace = metadata.get("namespace", "default") if namespaced else None
    return resource_path(obj["apiVersion"], plural, namespace=namespace, name=metadata["name"])


def apply_manifests(api: KubeApi, objects: Iterable[KubeObject]) -> None:
    """Server-side apply each object."""
    for obj in objects:
        api.apply(object_path(api, obj), obj, field_manager=FIELD_MANAGER)


def install_crds(api: KubeApi, files: Iterable[Path], *, timeout_s: float = 60.0) -> list[str]:
    """Apply the manifests in ``files`` and wait until each CRD among them is Established
    (before that, creating its objects fails). Returns the CRD names."""
    objects = load_manifests(files)
    apply_manifests(api, objects)
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"]
    for name in names:
        poll_until(partial(_established, api, name), timeout_s=timeout_s,
                   what=f"CRD {name} Established")
    return names


def _established(api: KubeApi, crd_name: str) -> bool:
    path = resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions", name=crd_name)
    conditions = api.get(path).get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@cache
def _kinds(api: KubeApi, api_version: str) -> dict[str, tuple[str, bool]]:
    """kind -> (plural, namespaced) for one group version, from discovery (once per client:
    the kinds of a group version do not change while it is served)."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    resources: list[dict[str, Any]] = api.get(base).get("resources", [])
    return {r["kind"]: (r["name"], bool(r["namespaced"]))
            for r in resources if "/" not in r["name"]}  # skip subresources (pods/status)
