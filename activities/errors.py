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

from contracts.errors import INVALID_REQUEST, NON_RETRYABLE_TYPES, UNSUPPORTED
from infra.errors import InfraError, InvalidRequestError, StackBusyError

__all__ = ["NON_RETRYABLE_TYPES", "translated_errors"]


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise ``infra`` exceptions as ``ApplicationError`` with the right retry semantics."""
    try:
        yield
    except InvalidRequestError as err:
        raise ApplicationError(str(err), type=INVALID_REQUEST, non_retryable=True) from err
    except StackBusyError as err:
        raise ApplicationError(str(err), type="StackBusy") from err
    except InfraError as err:
        raise ApplicationError(str(err), type="InfraError") from err
    except NotImplementedError as err:
        raise ApplicationError(str(err), type=UNSUPPORTED, non_retryable=True) from err
