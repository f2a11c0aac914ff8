"""A kubeconfig's inline client key is written to a private folder that does not outlive the
worker process, and a kubeconfig that is refused leaves no folder behind."""

from __future__ import annotations

import base64
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from infra.errors import InvalidRequestError
from infra.kubernetes.kubeconfig import credentials_from_kubeconfig
from workers.settings import REPO_ROOT

KEY = b"-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n"


def _kubeconfig(path: Path, *, with_key: bool = True) -> Path:
    user = {"client-certificate-data": base64.b64encode(b"cert").decode()}
    if with_key:
        user["client-key-data"] = base64.b64encode(KEY).decode()
    path.write_text(yaml.safe_dump({
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {
            "server": "https://198.18.0.1:6443",
            "certificate-authority-data": base64.b64encode(b"ca").decode()}}],
        "users": [{"name": "u", "user": user}],
    }))
    return path


def _ours() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("shadowshift-kubeconfig-*"))


def test_inline_key_is_private_and_removed_at_exit(tmp_path: Path) -> None:
    """The key file is 0600 in a 0700 folder while the process runs; the folder is gone once
    it exits."""
    config = _kubeconfig(tmp_path / "config")
    script = ("import sys; from pathlib import Path; "
              "from infra.kubernetes.kubeconfig import credentials_from_kubeconfig as c; "
              "k = c(Path(sys.argv[1])); key = Path(k.key_file); "
              "print(key, oct(key.stat().st_mode & 0o777), oct(key.parent.stat().st_mode & 0o777),"
              " key.read_bytes() == " + repr(KEY) + ")")
    done = subprocess.run([sys.executable, "-c", script, str(config)], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True)
    key, key_mode, folder_mode, same = done.stdout.split()
    assert (key_mode, folder_mode, same) == ("0o600", "0o700", "True")
    assert not Path(key).parent.exists()


def test_a_refused_kubeconfig_leaves_no_folder(tmp_path: Path) -> None:
    """No client key: refused with the field named, and nothing written."""
    before = _ours()
    with pytest.raises(InvalidRequestError, match="client-key is missing"):
        credentials_from_kubeconfig(_kubeconfig(tmp_path / "nokey", with_key=False))
    assert _ours() == before
