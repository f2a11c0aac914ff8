"""Heartbeating from threads that Temporal does not know about.

Pulumi calls its output callbacks on threads of its own, where the activity's context
variable is unset. We capture the activity's context once and replay each heartbeat inside
a copy of it; copying per call avoids "context already entered" when two threads report.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity


def heartbeat_callback(
    describe: Callable[[str], Any] | None = None, *, min_interval_s: float = 1.0
) -> Callable[[str], None]:
    """Return a thread-safe callback that heartbeats the current activity.

    Args:
        describe: turns a progress line into the heartbeat detail (default: the line itself).
        min_interval_s: local throttle, so a chatty program does not flood the SDK; the SDK
            throttles again before anything reaches the server.
    """
    context = contextvars.copy_context()
    lock = threading.Lock()
    last = [0.0]

    def on_progress(line: str) -> None:
        now = time.monotonic()
        with lock:
            if now - last[0] < min_interval_s:
                return
            last[0] = now
        detail = describe(line) if describe else line.strip()[:200]
        context.copy().run(activity.heartbeat, detail)

    return on_progress


@contextmanager
def heartbeating(detail: object | Callable[[], object],
                 every_s: float = 10.0) -> Iterator[None]:
    """Heartbeat the current activity from a thread every ``every_s`` while the block runs;
    ``detail`` is the payload, or a function that gives it afresh at each beat.

    For long blocking calls that report no progress (LightGBM training, pg_rewind, a copy, a
    cutover step waiting on a hung node): a steady beat lets the workflow set a short
    heartbeat timeout and notice a dead worker quickly.
    """
    current = detail if callable(detail) else (lambda: detail)
    beat = heartbeat_callback(lambda _: current(), min_interval_s=0)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            beat("")

    thread = threading.Thread(target=loop, name="activity-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
