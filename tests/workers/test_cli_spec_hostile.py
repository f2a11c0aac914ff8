"""Property tests of the spec loaders with hostile input: whatever a spec file or a spec
document holds, the loader returns a valid spec or raises the project's own error naming the
file, line and field; no other exception escapes as a traceback, and loading writes nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.spec import ProtectionSpec, SpecError, spec_from_dict, validate_spec
from workers.cli_spec import SpecFileError, load_spec_file

TOP_FIELDS = [f.name for f in dataclasses.fields(ProtectionSpec) if f.name != "decode_errors"]
FILE_LEVEL = ("not valid YAML", "the spec file is empty", "not a UTF-8 text file",
              "cannot read the spec file")
"""Refusals about the file as a whole, which have no field to name."""
NAMED_FIELD = re.compile(r"^(?P<field>[a-z_]+)(?:\.[A-Za-z0-9_]+)*[:\s]")
"""A message that starts with a (dotted) field, as every field refusal does."""

_HOSTILE_TEXT = st.sampled_from([
    "x;rm -rf /", "$(reboot)", "`id`", "../../etc/passwd", "a\nb", "a\x00b", "\u2028",
    "9" * 400, "", " ", "-1", "1e309", "nan", "true", "null", "~", "!!python/object:os.system",
])
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
                    _HOSTILE_TEXT)
_KEY = st.one_of(st.sampled_from([*TOP_FIELDS, "aws", "hosts", "policy", "threshold", "dns",
                                  "primary", "host", "decode_errors"]), st.text(max_size=12))
_DOCUMENT = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_KEY, inner, max_size=6)), max_leaves=25)
_SPEC_LIKE = st.fixed_dictionaries(
    {"instance_id": st.one_of(st.just("db-orders"), _SCALAR)},
    optional={name: _DOCUMENT for name in TOP_FIELDS if name != "instance_id"})

_YAML_TRICKS = [
    "instance_id: db1\nprimary_port: !!int abc\n",
    "instance_id: db1\npolicy: {threshold: !!float x}\n",
    "instance_id: !!binary not-base64!\n",
    "instance_id: !!timestamp 2026-13-45\n",
    "instance_id: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
    "instance_id: db1\naws: {? [a, b] : 1}\n",
    "a: &a [*a]\ninstance_id: db1\n",
    "instance_id: db1\x00\n",
    "instance_id: db1\x1b[31m\n",
    "\ufeffinstance_id: db1\n",
    "instance_id: db1\ninstance_id: db2\n",
    "- instance_id: db1\n",
    "instance_id: [db1]\n",
    "instance_id: db1\nhosts: {primary: [1, 2], shadow: {host: b, address: x}}\n",
    "instance_id: db1\nplatform: aws\naws: {dns: [], alb: 3}\n",
    "instance_id: db1\npolicy: []\n",
    "instance_id: db1\nprimary_port: 1e400\n",
    "x: " + "[" * 200 + "]" * 200 + "\n",
]
"""YAML's own ways of hurting a loader: bad tags, unhashable keys, recursive aliases,
control characters, deep nesting."""


def _names_the_field(message: str) -> bool:
    """Whether a refusal starts with what it refuses: a known (dotted) field, the spec as a
    whole, or an unknown key shown as typed (quoted when it is not a plain name)."""
    if message.startswith("the spec: "):
        return True
    known = NAMED_FIELD.match(message)
    if known and known["field"] in (*TOP_FIELDS, "decode_errors"):
        return True
    unknown = re.match(r"^(?:[a-z_.]+\.)?(?:[A-Za-z0-9_.-]+|'.*'|\".*\"|a key that is not a "
                       r"name): (unknown field|given twice|cannot be read)", message)
    return unknown is not None


def _check_refusal(message: str, path: Path) -> None:
    """A refusal is one line that names the file (and line), then the field, or says what
    is wrong with the file as a whole."""
    assert "\n" not in message and "\x1b" not in message, repr(message)
    assert message.startswith(str(path)), message
    rest = re.sub(r"^:\d+", "", message[len(str(path)):]).removeprefix(": ")
    assert rest.startswith(FILE_LEVEL) or _names_the_field(rest), f"names no field: {message!r}"


def _load(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    before = sorted(os.listdir(path.parent))
    try:
        spec = load_spec_file(path)
    except SpecFileError as err:
        _check_refusal(str(err), path)
    else:
        assert validate_spec(spec) is spec
    assert sorted(os.listdir(path.parent)) == before  # loading created nothing


@pytest.mark.parametrize("carried", [[None], ["instance_id: forged\nsecond line"], [{"a": 1}],
                                     ["no field named here"], ["x" * 5000]])
def test_forged_decode_errors_are_refused_naming_decode_errors(carried: list[Any]) -> None:
    """A client can send any ``decode_errors`` list: an entry this decoder would not have
    written is a refusal naming ``decode_errors``, one line (it was echoed as given: ``None``,
    or a forged multi-line message posing as another field's)."""
    spec = spec_from_dict({"instance_id": "db-orders", "decode_errors": carried}, strict=False)
    with pytest.raises(SpecError) as refused:
        validate_spec(spec)
    assert str(refused.value).startswith("decode_errors: ") and "\n" not in str(refused.value)


@pytest.mark.parametrize("text", _YAML_TRICKS, ids=range(len(_YAML_TRICKS)))
def test_yaml_tricks_are_refused_naming_the_line(tmp_path: Path, text: str) -> None:
    """Each trick is a :class:`SpecFileError` naming the file, line and field (or the file
    as a whole); a reader error (a NUL byte) used to escape as a traceback."""
    _load(tmp_path / "spec.yaml", text.encode())


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Binary garbage is 'not a UTF-8 text file', not a UnicodeDecodeError traceback."""
    _load(tmp_path / "spec.yaml", b"instance_id: db\xff\xfe\n")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(document=st.one_of(_SPEC_LIKE, _DOCUMENT))
def test_any_yaml_document_loads_or_is_refused_by_field(tmp_path: Path,
                                                        document: Any) -> None:
    """Any structure written as YAML (valid-looking fields with hostile values, or anything
    at all) gives a spec or a refusal naming the file, line and field."""
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return
    _load(tmp_path / "spec.yaml", text.encode("utf-8", "surrogatepass"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_any_bytes_load_or_are_refused(tmp_path: Path, content: bytes) -> None:
    """Arbitrary bytes: never a traceback."""
    _load(tmp_path / "spec.yaml", content)


@settings(max_examples=50, deadline=None)
@given(document=st.one_of(_SPEC_LIKE, _DOCUMENT))
def test_a_spec_document_from_the_temporal_cli_is_decoded_then_refused_by_field(
    document: Any,
) -> None:
    """The workflow's path: lenient decoding (what ``temporal workflow start --input-file``
    hands the data converter) never raises, and validation then accepts or raises
    :class:`SpecError` whose message starts with the field it refuses."""
    data = document if isinstance(document, dict) else {"instance_id": document}
    json.dumps(data, default=str)  # what could travel as a payload
    spec = spec_from_dict(data, strict=False)
    try:
        validate_spec(spec)
    except SpecError as err:
        assert "\n" not in str(err) and _names_the_field(str(err)), repr(str(err))
