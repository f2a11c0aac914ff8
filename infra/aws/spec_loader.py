"""Build an :class:`~infra.aws.spec.AwsShadowSpec` from YAML or a plain mapping.

Unknown or misspelt keys are refused by name (a typo in ``listener_arn`` must not silently
leave the ALB out of the cutover), and wrong types say which field and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import yaml

from infra.aws.spec import AlbRoutingSpec, AwsShadowSpec, DnsRoutingSpec, PostgresAppSpec
from infra.errors import InvalidRequestError

_SECTIONS: dict[str, type[DnsRoutingSpec] | type[AlbRoutingSpec] | type[PostgresAppSpec]] = {
    "dns": DnsRoutingSpec,
    "alb": AlbRoutingSpec,
    "postgres": PostgresAppSpec,
}


def load_spec(data: Mapping[str, Any]) -> AwsShadowSpec:
    """Validate ``data`` (e.g. parsed YAML) into a spec.

    Raises:
        InvalidRequestError: a missing, unknown or invalid field, named in the message.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequestError(f"the AWS spec must be a mapping, not {type(data).__name__}")
    values = _checked_keys(data, AwsShadowSpec, "")
    for section, cls in _SECTIONS.items():
        raw = values.get(section)
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            raise InvalidRequestError(f"{section} must be a mapping of its fields")
        values[section] = cls(**_checked_keys(raw, cls, f"{section}."))
    try:
        return AwsShadowSpec(**values)
    except TypeError as err:  # pragma: no cover - _checked_keys catches these first
        raise InvalidRequestError(f"invalid AWS spec: {err}") from err


def load_spec_file(path: Path) -> AwsShadowSpec:
    """Read a YAML protection spec (the ``aws`` section if present, else the whole file)."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InvalidRequestError(f"cannot read AWS spec {path}: {err}") from err
    if isinstance(document, Mapping) and isinstance(document.get("aws"), Mapping):
        document = document["aws"]
    return load_spec(document)


def _checked_keys(data: Mapping[str, Any], cls: type, prefix: str) -> dict[str, Any]:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise InvalidRequestError(
            f"unknown field(s) {', '.join(prefix + k for k in unknown)}; "
            f"known: {', '.join(prefix + k for k in known)}"
        )
    required = [
        name
        for name, f in known.items()
        if f.default is MISSING and f.default_factory is MISSING and name not in data
    ]
    if required:
        raise InvalidRequestError(f"missing field(s) {', '.join(prefix + k for k in required)}")
    return dict(data)
