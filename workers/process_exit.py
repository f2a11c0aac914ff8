"""Leaving a process that used the Temporal SDK without tripping its exit-time crash.

The SDK's native runtime can abort while the interpreter finalises (sdk-python issue 300),
turning a clean exit into SIGABRT. Our entry points have stopped everything they started by
the time they return, so they flush stdio and leave with ``os._exit``, which skips the
finalisation where the crash happens and keeps the exit code they meant.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    """Flush logs and stdio, then end the process with ``code`` immediately."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
