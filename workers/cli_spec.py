"""Read a protection spec from YAML, and on any mistake say which line and which field.

PyYAML's node tree keeps each key's position (``start_mark``), so the file is composed into
nodes first and walked alongside the field types of :class:`ProtectionSpec`; the values are
then checked by the same :func:`validate_spec` the workflow uses, and its error is placed on
the line of the field it names. Example::

    instance_id: db-orders
    platform: local
    tier: 1
    primary_port: 5433
    shadow_port: 5434
    router_port: 6433
    policy:
      threshold: 60
      advisory: false
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from workers.cli_base import UsageError
from workflows.protection_spec import PolicySpec, ProtectionSpec, SpecError, validate_spec

_KINDS: dict[str, dict[str, str]] = {
    "": {
        "instance_id": "str", "platform": "str", "tier": "int", "primary_port": "int",
        "shadow_port": "int", "router_port": "int", "policy": "mapping",
        "standing_shadow": "bool",
    },
    "policy": {
        "threshold": "number", "consecutive_readings": "int", "cooldown_s": "number",
        "advisory": "bool", "profile": "str",
    },
}
_EXPECTED = {"str": "a string", "int": "an integer", "number": "a number",
             "bool": "true or false", "mapping": "a mapping of fields"}
_FIELD = re.compile(r"^([a-z_]+(?:\.[a-z_]+)?)")


class SpecFileError(UsageError):
    """The spec file cannot be used; the message starts with ``file:line: field:``."""


def load_spec_file(path: Path) -> ProtectionSpec:
    """Parse and validate ``path``.

    Raises:
        SpecFileError: unreadable, not YAML, wrong shape or invalid value; names the line
            and the field.
    """
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecFileError(f"{path}: cannot read the spec file: {err.strerror}") from err
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecFileError(f"{where}: not valid YAML: {err.problem or err}") from err
    if root is None:
        raise SpecFileError(f"{path}: the spec file is empty; it needs at least instance_id")
    lines: dict[str, int] = {}
    values = _mapping(path, root, "", lines)
    if "instance_id" not in values:
        raise SpecFileError(f"{path}:1: instance_id: required (the instance to protect)")
    policy = PolicySpec(**values.pop("policy", {}))
    spec = ProtectionSpec(**values, policy=policy)
    try:
        return validate_spec(spec)
    except SpecError as err:
        match = _FIELD.match(str(err))
        line = lines.get(match.group(1), 1) if match else 1
        raise SpecFileError(f"{path}:{line}: {err}") from err


def _mapping(path: Path, node: yaml.Node, prefix: str, lines: dict[str, int]) -> dict[str, Any]:
    """Check one mapping's keys and value kinds, recording each field's line."""
    section = prefix or "the spec"
    if not isinstance(node, yaml.MappingNode):
        raise SpecFileError(f"{path}:{node.start_mark.line + 1}: {section}: expected a "
                            "mapping of fields (name: value)")
    kinds = _KINDS[prefix]
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        name = str(key_node.value)
        dotted = f"{prefix}.{name}" if prefix else name
        line = key_node.start_mark.line + 1
        if name not in kinds:
            allowed = ", ".join(kinds)
            raise SpecFileError(f"{path}:{line}: {dotted}: unknown field; allowed: {allowed}")
        if name in values:
            raise SpecFileError(f"{path}:{line}: {dotted}: given twice")
        lines[dotted] = line
        if kinds[name] == "mapping":
            values[name] = _mapping(path, value_node, dotted, lines)
            continue
        value = _scalar(value_node)
        if not _is_kind(value, kinds[name]):
            shown = value_node.value if isinstance(value_node, yaml.ScalarNode) else "a list"
            raise SpecFileError(f"{path}:{line}: {dotted}: expected {_EXPECTED[kinds[name]]}, "
                                f"got {shown!r}")
        values[name] = float(value) if kinds[name] == "number" else value
    return values


def _scalar(node: yaml.Node) -> Any:
    """A scalar node's value as YAML resolves it (``3`` int, ``true`` bool...); else None."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float)
    return isinstance(value, str)


def spec_to_yaml(spec: ProtectionSpec) -> str:
    """The spec as YAML (what ``load_spec_file`` reads back)."""
    return yaml.safe_dump(dataclasses.asdict(spec), sort_keys=False)
