"""Turning ``infra`` exceptions into Temporal failures with retry semantics.

=====================  ========================  ==========
infra exception        ApplicationError type     retried?
=====================  ========================  ==========
InvalidRequestError    ``InvalidRequest``        no
StackBusyError         ``StackBusy``             yes
InfraError (other)     ``InfraError``            yes
NotImplementedError    ``Unsupported``           no (the platform lacks the operation)
=====================  ========================  ==========
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError

from infra.errors import InfraError, InvalidRequestError, StackBusyError

NON_RETRYABLE_TYPES = ["InvalidRequest", "Unsupported"]
"""Error types a workflow's retry policy should list as non-retryable."""


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise ``infra`` exceptions as ``ApplicationError`` with the right retry semantics."""
    try:
        yield
    except InvalidRequestError as err:
        raise ApplicationError(str(err), type="InvalidRequest", non_retryable=True) from err
    except StackBusyError as err:
        raise ApplicationError(str(err), type="StackBusy") from err
    except InfraError as err:
        raise ApplicationError(str(err), type="InfraError") from err
    except NotImplementedError as err:
        raise ApplicationError(str(err), type="Unsupported", non_retryable=True) from err
