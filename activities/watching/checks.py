"""Per-protection checks that run every second inside the fleet watcher's activity.

Each protection is checked on its own task, at most one check at a time: a primary that hangs
holds its own check for up to libpq's connect timeout, never another protection's (a sequential
loop would delay every other tier-1 relax, or another primary's failover, by that long).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


async def check_each(
    targets: Callable[[], Mapping[str, T]],
    check: Callable[[T], Awaitable[None]],
    interval_s: float,
) -> None:
    """Start ``check(target)`` for every target each ``interval_s`` unless its previous check
    still runs; until cancelled. A check's exception is logged and ends only that check."""
    running: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            current = targets()
            for key, target in current.items():
                task = running.get(key)
                if task is None or task.done():
                    running[key] = asyncio.create_task(_logged(key, check(target)))
            for key in [k for k, task in running.items() if task.done() and k not in current]:
                del running[key]
            await asyncio.sleep(interval_s)
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)


async def _logged(key: str, check: Awaitable[None]) -> None:
    try:
        await check
    except asyncio.CancelledError:
        raise
    except Exception:  # one protection's trouble must not end the others' checks
        log.exception("Check of %s failed", key)
