"""Read a protection spec from YAML, and on any mistake say which line and which field.

PyYAML's node tree keeps each key's position (``start_mark``), so the file is composed into
nodes first and walked alongside the field types of :class:`ProtectionSpec` (read from the
dataclasses themselves, so a field added there is accepted here); the values are then checked
by the same :func:`validate_spec` the workflow uses, and its error is placed on the line of
the field it names, down to nested keys of the ``aws`` section (``aws.dns.ttl_s``). The
same spec as JSON is what ``temporal workflow start --input-file`` takes. Example::

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
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from contracts.spec import ProtectionSpec, SpecError, shown_name, validate_spec
from workers.cli_base import UsageError

_SCALARS = {str: "str", int: "int", float: "number", bool: "bool"}


@dataclasses.dataclass(frozen=True)
class _ListOf:
    """A field holding a list of nested sections (``hosts.spares``)."""

    item: type


def _field_kinds(cls: type) -> dict[str, str | type | _ListOf]:
    """Kind per field of dataclass ``cls``, from its type hints: a scalar kind, ``section``
    (a free mapping), or the nested dataclass itself (``X | None`` reads as ``X``; a YAML
    ``null`` keeps the default). Built from the dataclass so a field added there is accepted
    here."""
    hints = typing.get_type_hints(cls)
    kinds: dict[str, str | type | _ListOf] = {}
    for item in dataclasses.fields(cls):
        if item.name == "decode_errors":  # set by lenient decoding, never by a file
            continue
        hint = hints[item.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            kinds[item.name] = hint
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(
                element := typing.get_args(hint)[0]) and isinstance(element, type):
            kinds[item.name] = _ListOf(element)
        elif typing.get_origin(hint) is dict or hint is dict:
            kinds[item.name] = "section"
        elif hint in _SCALARS:
            kinds[item.name] = _SCALARS[hint]
        else:  # a new field of a type this loader cannot read: fail loudly, in tests too
            raise TypeError(f"{cls.__name__}.{item.name}: no YAML kind for {hint!r}")
    return kinds


_EXPECTED = {"str": "a string", "int": "an integer", "number": "a number",
             "bool": "true or false", "section": "a mapping of fields"}
_FIELD = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*)")


class SpecFileError(UsageError):
    """The spec file cannot be used; the message starts with ``file:line: field:``."""


def load_spec_file(path: Path) -> ProtectionSpec:
    """Parse and validate ``path``.

    Raises:
        SpecFileError: unreadable, not YAML, wrong shape or invalid value; names the line
            and the field.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecFileError(f"{path}: cannot read the spec file: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise SpecFileError(f"{path}: not a UTF-8 text file (byte {err.start} cannot be "
                            "decoded)") from err
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecFileError(f"{where}: not valid YAML: {err.problem or err}") from err
    except yaml.YAMLError as err:  # the reader's errors (a NUL or control character) carry
        # no mark, only a position
        at = getattr(err, "position", None)
        where = f" at character {at}" if isinstance(at, int) else ""
        raise SpecFileError(f"{path}: not valid YAML{where}: "
                            f"{str(err).splitlines()[0]}") from err
    if root is None:
        raise SpecFileError(f"{path}: the spec file is empty; it needs at least instance_id")
    lines: dict[str, int] = {}
    values = _mapping(path, root, ProtectionSpec, "", lines)
    if "instance_id" not in values:
        raise SpecFileError(f"{path}:1: instance_id: required (the instance to protect)")
    spec = ProtectionSpec(**values)
    try:
        return validate_spec(spec)
    except SpecError as err:
        raise SpecFileError(f"{path}:{_line_of(str(err), lines)}: {err}") from err


def _line_of(message: str, lines: dict[str, int]) -> int:
    """Line of the longest dotted field the message starts with (``aws.dns.ttl_s`` → that
    key's line, else ``aws.dns``'s, else ``aws``'s); 1 when it names none."""
    match = _FIELD.match(message)
    parts = match.group(1).split(".") if match else []
    while parts:
        if ".".join(parts) in lines:
            return lines[".".join(parts)]
        parts.pop()
    return 1


def _mapping(
    path: Path, node: yaml.Node, cls: type, prefix: str, lines: dict[str, int]
) -> dict[str, Any]:
    """Check one mapping's keys and value kinds against dataclass ``cls``, recording each
    field's line; nested dataclasses come back built."""
    section = prefix or "the spec"
    if not isinstance(node, yaml.MappingNode):
        raise SpecFileError(f"{path}:{node.start_mark.line + 1}: {section}: expected a "
                            "mapping of fields (name: value)")
    kinds = _field_kinds(cls)
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
        dotted = f"{prefix}.{name}" if prefix else name
        line = key_node.start_mark.line + 1
        if name not in kinds:
            allowed = ", ".join(kinds)
            shown = shown_name(name) if name else "a key that is not a name"
            raise SpecFileError(f"{path}:{line}: {prefix + '.' if prefix else ''}{shown}: "
                                f"unknown field; allowed: {allowed}")
        if name in values:
            raise SpecFileError(f"{path}:{line}: {dotted}: given twice")
        lines[dotted] = line
        kind = kinds[name]
        if isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null"):
            continue  # null: the field's default
        if isinstance(kind, type):
            values[name] = _built(path, value_node, kind, dotted, line, lines)
            continue
        if isinstance(kind, _ListOf):
            if not isinstance(value_node, yaml.SequenceNode):
                raise SpecFileError(f"{path}:{line}: {dotted}: expected a list of mappings "
                                    "(- name: value)")
            values[name] = [
                _built(path, item, kind.item, f"{dotted}[{i}]", item.start_mark.line + 1, lines)
                for i, item in enumerate(value_node.value)]
            continue
        if kind == "section":
            values[name] = _section(path, value_node, dotted, lines)
            continue
        value = _scalar(path, value_node, dotted)
        if not _is_kind(value, kind):
            shown = value_node.value if isinstance(value_node, yaml.ScalarNode) else "a list"
            raise SpecFileError(f"{path}:{line}: {dotted}: expected {_EXPECTED[kind]}, "
                                f"got {shown!r}")
        values[name] = float(value) if kind == "number" else value
    return values


def _built(path: Path, node: yaml.Node, cls: type, dotted: str, line: int,
           lines: dict[str, int]) -> Any:
    """A nested section checked by :func:`_mapping` and built, its required fields given."""
    nested = _mapping(path, node, cls, dotted, lines)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in nested
               and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SpecFileError(f"{path}:{line}: {dotted}.{missing[0]}: required")
    return cls(**nested)


def _section(path: Path, node: yaml.Node, prefix: str, lines: dict[str, int]) -> dict[str, Any]:
    """A free mapping (checked later by ``validate_spec``): record every key's line so its
    errors point at the right one, and return it as plain data."""
    if not isinstance(node, yaml.MappingNode):
        raise SpecFileError(f"{path}:{node.start_mark.line + 1}: {prefix}: expected "
                            f"{_EXPECTED['section']} (name: value)")
    for key_node, value_node in node.value:
        dotted = f"{prefix}.{key_node.value}"
        lines.setdefault(dotted, key_node.start_mark.line + 1)
        if isinstance(value_node, yaml.MappingNode):
            _section(path, value_node, dotted, lines)
    return dict(_construct(path, node, prefix))


def _scalar(path: Path, node: yaml.Node, dotted: str) -> Any:
    """A scalar node's value as YAML resolves it (``3`` int, ``true`` bool...); else None."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    return _construct(path, node, dotted)


def _construct(path: Path, node: yaml.Node, dotted: str) -> Any:
    """The value of ``node``; an explicit tag it does not fit (``!!int abc``, bad
    ``!!binary``, an unhashable key) is a :class:`SpecFileError` on its line, not the
    ``ValueError`` PyYAML's constructors raise."""
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as err:
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecFileError(f"{path}:{node.start_mark.line + 1}: {dotted}: cannot be read "
                            f"({reason})") from None


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
