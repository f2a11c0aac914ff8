"""Workflow code never reads files: a failing cutover is reported with a clear message even
when reading a source file from workflow code is slow and then fails. The default failure
converter formats tracebacks with source lines read through ``linecache``: under load such a
read once kept a workflow task from yielding for 2 s and tripped Temporal's deadlock
detector."""

from __future__ import annotations

import asyncio
import linecache
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowFailureError
from temporalio.converter import DefaultFailureConverter, DefaultPayloadConverter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.cutover import CutoverInput
from contracts.wire import DATA_CONVERTER
from tests.conftest import LocalService, with_spec
from tests.workflows.test_cutover import run_cutover
from workers.settings import Settings


class _SourceReadError(OSError):
    """Raised by the patched ``linecache`` instead of reading a source file."""


@contextmanager
def unreadable_sources(*, in_workflows_only: bool = False,
                       stall_s: float = 0.0) -> Iterator[None]:
    """While open, every attempt to read (or stat) a source file through ``linecache`` fails,
    after ``stall_s`` (a disk under load). ``in_workflows_only``: only on the threads the SDK
    runs workflow activations on, named ``temporal_workflow_*``; activities and the test
    itself read as usual. Kept to the code under test: pytest's reporting reads sources too."""
    read, check = linecache.updatecache, linecache.checkcache

    def refused() -> bool:
        if in_workflows_only and not threading.current_thread().name.startswith(
                "temporal_workflow_"):
            return False
        time.sleep(stall_s)
        return True

    def updatecache(*args: Any, **kwargs: Any) -> Any:
        if refused():
            raise _SourceReadError("reading source files is not allowed here")
        return read(*args, **kwargs)

    def checkcache(*args: Any, **kwargs: Any) -> Any:
        if refused():
            raise _SourceReadError("reading source files is not allowed here")
        return check(*args, **kwargs)

    linecache.clearcache()
    linecache.updatecache, linecache.checkcache = updatecache, checkcache
    try:
        yield
    finally:
        linecache.updatecache, linecache.checkcache = read, check


def _raised() -> ApplicationError:
    try:
        raise ApplicationError("cutover refused: test", type="CutoverRejected")
    except ApplicationError as err:
        return err


def test_the_patch_bites_the_default_converter_but_not_ours() -> None:
    """Control: with source reads failing, Temporal's default converter cannot convert an
    exception with a traceback; ShadowShift's can, and keeps file, line and function."""
    default_failed: BaseException | None = None
    failure = Failure()
    with unreadable_sources():
        try:
            DefaultFailureConverter().to_failure(_raised(), DefaultPayloadConverter(), Failure())
        except _SourceReadError as err:
            default_failed = err
        DATA_CONVERTER.failure_converter.to_failure(_raised(),
                                                    DATA_CONVERTER.payload_converter, failure)
    assert default_failed is not None
    assert failure.message == "cutover refused: test"
    assert "test_no_file_reads.py" in failure.stack_trace and "in _raised" in failure.stack_trace


async def test_a_refused_cutover_fails_clearly_without_reading_files(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """The cutover of an unknown instance is refused at preflight and the workflow fails at
    once with the reason, although every source read from workflow code would stall 2.5 s
    (past the SDK's 2-s deadlock detector) and then fail."""
    request = with_spec(local_service.request, instance_id="db-nobody")
    failed: WorkflowFailureError | None = None
    with unreadable_sources(in_workflows_only=True, stall_s=2.5):
        try:
            async with asyncio.timeout(60):  # a stuck workflow task would retry forever
                await run_cutover(temporal_env.client, settings, task_queue,
                                  CutoverInput(request))
        except WorkflowFailureError as err:
            failed = err
    assert failed is not None, "the refused cutover did not fail"
    cause = failed.cause
    assert isinstance(cause, ApplicationError) and cause.type == "CutoverRejected"
    assert "unknown instance db-nobody" in cause.message
