"""Read a kubeconfig into :class:`~infra.kubernetes.api.KubeCredentials`.

Only what the worker's own client needs: the current context's server, its CA and a client
certificate user. Inline ``*-data`` fields are written to a private folder (0700, files 0600)
once per process, because Python's TLS context loads a client certificate and key from files
only; the folder is removed when the process exits (a SIGKILLed worker leaves it, private,
under the temporary directory). Pulumi's provider reads the same file itself (its
``kubeconfig`` input).
"""

from __future__ import annotations

import atexit
import base64
import binascii
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from infra.errors import InvalidRequestError
from infra.files import write_whole
from infra.kubernetes.api import KubeCredentials


@functools.cache
def credentials_from_kubeconfig(path: Path) -> KubeCredentials:
    """The current context's server and client certificate.

    Raises:
        InvalidRequestError: the file is missing or unreadable, or its current context has
            no server, CA or client certificate (token and exec users are not supported).
    """
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InvalidRequestError(f"kubeconfig {path}: cannot read it ({err}); set "
                                  "SHADOWSHIFT_KUBECONFIG to a readable kubeconfig") from None
    if not isinstance(config, dict):
        raise InvalidRequestError(f"kubeconfig {path}: not a kubeconfig")
    context = _named(config, "contexts", config.get("current-context"), path)["context"]
    cluster = _named(config, "clusters", context.get("cluster"), path)["cluster"]
    user = _named(config, "users", context.get("user"), path)["user"]
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise InvalidRequestError(f"kubeconfig {path}: the current cluster has no https server")
    folder = Path(tempfile.mkdtemp(prefix="shadowshift-kubeconfig-"))
    try:
        credentials = KubeCredentials(
            server=server,
            ca_file=_file(cluster, "certificate-authority", folder, path),
            cert_file=_file(user, "client-certificate", folder, path),
            key_file=_file(user, "client-key", folder, path),
        )
    except InvalidRequestError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if any(folder.iterdir()):
        atexit.register(shutil.rmtree, folder, True)
    else:
        folder.rmdir()
    return credentials


def _named(config: dict[str, Any], kind: str, name: object, path: Path) -> dict[str, Any]:
    for entry in config.get(kind) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise InvalidRequestError(f"kubeconfig {path}: no {kind[:-1]} named {name!r} (the "
                              "current context's)")


def _file(section: dict[str, Any], key: str, folder: Path, path: Path) -> Path:
    """The file ``key`` names, or the inline ``key-data`` written to ``folder``."""
    if isinstance(section.get(key), str):
        named = Path(section[key])
        return named if named.is_absolute() else path.parent / named
    data = section.get(f"{key}-data")
    if not isinstance(data, str):
        raise InvalidRequestError(f"kubeconfig {path}: {key} is missing (ShadowShift "
                                  "authenticates with a client certificate)")
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error:
        raise InvalidRequestError(f"kubeconfig {path}: {key}-data is not base64") from None
    written = folder / key
    write_whole(written, raw, 0o600)
    return written
