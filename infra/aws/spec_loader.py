"""Build an :class:`~infra.aws.spec.AwsShadowSpec` from YAML or a plain mapping, through the
protection spec's own loader (``contracts.spec``).

Unknown or misspelt keys are refused by name (a typo in ``listener_arn`` must not silently
leave the ALB out of the cutover), and wrong types say which field and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from contracts.spec import SpecError, spec_from_dict, validate_spec
from infra.aws.spec import AwsShadowSpec
from infra.errors import InvalidRequestError


def load_spec(data: Mapping[str, Any]) -> AwsShadowSpec:
    """Validate ``data`` (an ``aws`` section with ``instance_id`` and ``tier``) into a spec.

    Raises:
        InvalidRequestError: a missing, unknown or invalid field, named in the message.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequestError(f"the AWS spec must be a mapping, not {type(data).__name__}")
    section = dict(data)
    document = {"instance_id": section.pop("instance_id", None), "platform": "aws",
                "tier": section.pop("tier", 2), "aws": section}
    if document["instance_id"] is None:
        raise InvalidRequestError("missing field(s) instance_id")
    try:
        spec = validate_spec(spec_from_dict(document))
    except SpecError as err:
        raise InvalidRequestError(str(err).removeprefix("aws.")) from err
    return AwsShadowSpec.from_spec(spec)


def load_spec_file(path: Path) -> AwsShadowSpec:
    """Read a YAML protection spec (the ``aws`` section if present, else the whole file)."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InvalidRequestError(f"cannot read AWS spec {path}: {err}") from err
    if isinstance(document, Mapping) and isinstance(document.get("aws"), Mapping):
        document = document["aws"]
    return load_spec(document)
