"""The version agents compare (``contracts.version.VERSION``) is the version the package is
installed as, so an upgrade that bumps ``pyproject.toml`` cannot leave agents and control
workers agreeing on a stale number."""

from __future__ import annotations

import tomllib

from contracts.version import VERSION
from workers.settings import REPO_ROOT


def test_version_is_pyproject_version() -> None:
    """``contracts.version.VERSION`` equals ``[project] version`` in ``pyproject.toml``."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == VERSION
