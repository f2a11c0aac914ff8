"""A one-resource Pulumi program for the driver's tests (test code, not product code).

``SmokeFile`` is a Python dynamic provider that owns one file. It exercises the whole path
a real shadow takes (inline program, dynamic-provider host launched by the CLI, state on the
``file://`` backend, ``refresh`` reading reality back) with a side effect a test can see.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)


def _digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


class SmokeFileProvider(ResourceProvider):
    """Creates, reads, updates and deletes one file; every operation is idempotent."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Write the file (overwriting whatever a crashed earlier attempt left)."""
        path = Path(props["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(props["content"])
        return CreateResult(id_=str(path), outs={**props, "sha256": _digest(props["content"])})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Report the file as it is on disk; a missing file reads as gone."""
        path = Path(id_)
        if not path.exists():
            return ReadResult(id_=None, outs={})
        content = path.read_text()
        return ReadResult(
            id_=id_, outs={"path": id_, "content": content, "sha256": _digest(content)}
        )

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A new path replaces the resource; new content updates it in place."""
        replaces = ["path"] if olds.get("path") != news["path"] else []
        changed = bool(replaces) or olds.get("content") != news["content"]
        return DiffResult(changes=changed, replaces=replaces, delete_before_replace=False)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Rewrite the content."""
        Path(id_).write_text(news["content"])
        return UpdateResult(outs={**news, "sha256": _digest(news["content"])})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Remove the file; already gone is fine."""
        Path(id_).unlink(missing_ok=True)


class SmokeFile(Resource):
    """A file managed by :class:`SmokeFileProvider`."""

    sha256: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        path: str,
        content: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            SmokeFileProvider(),
            name,
            {"path": path, "content": content, "sha256": None},
            opts,
        )


def smoke_program(path: str, content: str) -> Any:
    """Return an inline Pulumi program that manages one :class:`SmokeFile`."""

    def program() -> None:
        managed = SmokeFile("smoke-file", path=path, content=content)
        pulumi.export("path", path)
        pulumi.export("sha256", managed.sha256)

    return program
