"""Validation of the names that become paths, stack names and HAProxy server names."""

from __future__ import annotations

import re

from infra.errors import InvalidRequestError

_INSTANCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,46}[a-z0-9]\Z")
_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}\Z")


def validate_instance_id(instance_id: str) -> str:
    """Return ``instance_id`` if it is safe as a path component, stack and server name.

    Allowed: 2-48 characters, lower-case letters, digits and ``-``, starting with a letter and
    not ending with ``-``. That rules out ``..``, ``/``, whitespace and shell metacharacters.

    Raises:
        InvalidRequestError: the id could escape a path or a stack name.
    """
    if not isinstance(instance_id, str) or not _INSTANCE_ID.match(instance_id):
        raise InvalidRequestError(
            f"invalid instance id {instance_id!r}: use 2-48 characters of a-z, 0-9 and '-', "
            "starting with a letter and not ending with '-'"
        )
    return instance_id


def validate_stack_name(stack_name: str) -> str:
    """Return ``stack_name`` if Pulumi and the filesystem both accept it safely."""
    if not isinstance(stack_name, str) or not _STACK_NAME.match(stack_name) or ".." in stack_name:
        raise InvalidRequestError(
            f"invalid stack name {stack_name!r}: use letters, digits, '_', '.', '-' "
            "(1-100 characters, no '..')"
        )
    return stack_name
