"""The exceptions of ``infra``.

::

    InfraError                     anything the platform layer could not do
    ├── StackBusyError             another live operation holds the stack's lock (retry later)
    ├── StackProgramError          the Pulumi program or a provider failed
    └── InvalidRequestError        the request itself is wrong; retrying cannot help

Activities map :class:`InvalidRequestError` to non-retryable ``ApplicationError``s.
"""

from __future__ import annotations


class InfraError(Exception):
    """The platform layer could not do what was asked."""


class StackBusyError(InfraError):
    """Another live operation holds the stack's lock."""


class StackProgramError(InfraError):
    """The Pulumi program or one of its providers failed."""


class InvalidRequestError(InfraError):
    """The request is malformed or impossible; retrying cannot help."""
