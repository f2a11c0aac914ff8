"""How ShadowShift's types travel through Temporal: the data converter every client and
worker uses.

It is Temporal's default converter with two changes:

- a :class:`ProtectionSpec` is decoded leniently by :func:`contracts.spec.spec_from_dict`, so
  unknown fields and wrong types in a spec started with the plain ``temporal`` CLI become
  :attr:`ProtectionSpec.decode_errors` (which the workflow's first step refuses by name)
  instead of being silently dropped (the default converter ignores unknown keys) or failing
  every workflow task forever (a type error while decoding the input);
- the update messages an operator or another service sends (:class:`PolicyChange`,
  :class:`CutoverRequest`, :class:`UnprotectRequest`) are decoded strictly: the default
  converter turns ``1.5`` into ``1`` and ``true`` into ``1`` for an ``int`` field, so
  ``{"consecutive_readings": 1.5}`` would have been accepted as 1; here it is refused naming
  the field, before the update's validator runs (nothing is recorded). Only these types:
  elsewhere a float stored in an ``int`` field by older code must still replay;
- failures carry stack traces of file, line and function only, never source lines. The
  default converter formats tracebacks with ``traceback.format_tb``, which reads source files
  through ``linecache``: inside a workflow that is file I/O, and under load it tripped
  Temporal's deadlock detector (a workflow task that did not yield within 2 s).
"""

from __future__ import annotations

import dataclasses
import traceback
import types
import typing
from typing import Any

import temporalio.api.failure.v1
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
)
from temporalio.converter import PayloadConverter as BasePayloadConverter

from contracts.policy import PolicyChange
from contracts.protection import CutoverRequest, UnprotectRequest
from contracts.spec import ProtectionSpec, spec_from_dict

STRICT_MESSAGES: tuple[type, ...] = (PolicyChange, CutoverRequest, UnprotectRequest)
"""Update inputs whose scalar fields are decoded without coercion (module docstring)."""
_SCALAR_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


class _SpecConverter(JSONTypeConverter):
    """Decode :class:`ProtectionSpec` leniently (see the module docstring)."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if hint is ProtectionSpec and isinstance(value, dict):
            return spec_from_dict(value, strict=False)
        return JSONTypeConverter.Unhandled


class _StrictMessageConverter(JSONTypeConverter):
    """Refuse a message whose scalar fields have the wrong JSON type (module docstring);
    the default conversion then builds it."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if hint in STRICT_MESSAGES and isinstance(value, dict):
            hints = typing.get_type_hints(hint)
            for field in dataclasses.fields(hint):
                if field.name in value:
                    _check_scalar(field.name, hints[field.name], value[field.name])
        return JSONTypeConverter.Unhandled


def _check_scalar(name: str, hint: Any, value: Any) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``value`` is exactly of scalar ``hint``
    (``X | None`` allows null; non-scalar hints are left to the default conversion)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint not in _SCALAR_KINDS:
        return
    fits = (isinstance(value, bool) if hint is bool
            else not isinstance(value, bool) and (
                isinstance(value, int | float) if hint is float else isinstance(value, hint)))
    if not fits:
        raise TypeError(f"{name}: expected {_SCALAR_KINDS[hint]}, got {value!r}"[:300])


class PayloadConverter(CompositePayloadConverter):
    """Temporal's default converters, with the spec-aware JSON one."""

    def __init__(self) -> None:
        json_converter = JSONPlainPayloadConverter(
            custom_type_converters=[_SpecConverter(), _StrictMessageConverter()])
        super().__init__(*(
            json_converter if isinstance(c, JSONPlainPayloadConverter) else c
            for c in DefaultPayloadConverter.default_encoding_payload_converters
        ))


class FailureConverter(DefaultFailureConverter):
    """Temporal's failure converter, with stack traces that never read source files."""

    def to_failure(self, exception: BaseException, payload_converter: BasePayloadConverter,
                   failure: temporalio.api.failure.v1.Failure) -> None:
        """Convert as the default does, after taking the tracebacks off the exception chain;
        then write the top exception's trace as ``file:line in function`` lines."""
        trace = exception.__traceback__
        chain: list[BaseException] = []
        current: BaseException | None = exception
        while current is not None and current not in chain:
            chain.append(current)
            current.__traceback__ = None
            current = current.__cause__ or (None if current.__suppress_context__
                                            else current.__context__)
        super().to_failure(exception, payload_converter, failure)
        if trace is not None and not failure.stack_trace:
            failure.stack_trace = stack_without_source(trace)


def stack_without_source(trace: Any) -> str:
    """A traceback as ``File "f", line n, in name`` lines, reading no file."""
    # Not StackSummary.extract: even without looking lines up it stats cached files.
    return "\n".join(f'  File "{frame.f_code.co_filename}", line {lineno}, in '
                     f'{frame.f_code.co_name}' for frame, lineno in traceback.walk_tb(trace))


DATA_CONVERTER = dataclasses.replace(DataConverter.default,
                                     payload_converter_class=PayloadConverter,
                                     failure_converter_class=FailureConverter)
"""The data converter of every ShadowShift client and worker."""
