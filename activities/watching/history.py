"""The readiness score's history term, read from the outcome store for the fleet watcher.

Each watched instance gets its historical failure rate (``models.history``): the share of its
resolved decision records that ended in failure, labelled so that a cutover cannot bias them
(``models.feedback``), shrunk towards the rate of its *class* (same platform and tier) and
the class towards the fleet. An instance without a single record therefore gets its class's
rate, not 0.

Why the records are cached: the store is one SQLite file shared with the outcome probes, and
the watcher scores every few seconds; records change on the scale of minutes (a cutover, a
near miss, an outcome resolved). One read per :data:`REFRESH_S` keeps the term current at a
negligible cost; the rates themselves are recomputed only when the records or the watched
classes change.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence

from activities.outcomes_store import HistoryRecord, OutcomeStore
from models.history import HistoryConfig, rates_from_history

log = logging.getLogger(__name__)

REFRESH_S = 300.0
"""Seconds between two reads of the outcome store."""
LOOKBACK_S = 365 * 86400.0
"""Records older than this weigh less than 6 % (90-day half-life) and are not read."""


def instance_class(platform: str, tier: int) -> str:
    """The class an instance shares its prior with: its platform and tier."""
    return f"{platform}/tier-{tier}"


class FailureHistory:
    """Historical failure rates of watched instances, from one outcome store."""

    def __init__(self, store: OutcomeStore, *, refresh_s: float = REFRESH_S,
                 config: HistoryConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._config = config
        self._clock = clock
        self._records: Sequence[HistoryRecord] = ()
        self._read_at: float | None = None
        self._rates: dict[str, float] = {}
        self._rated_for: dict[str, str] | None = None

    def rates(self, classes: Mapping[str, str]) -> dict[str, float]:
        """Rate (0..1) of every instance in ``classes`` (instance → class name)."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh_s:
            self._read(now)
        if self._rated_for != dict(classes):
            self._rates = rates_from_history(self._records, now, classes, list(classes),
                                             self._config)
            self._rated_for = dict(classes)
        return {iid: self._rates[iid] for iid in classes}

    def _read(self, now: float) -> None:
        self._read_at = now
        try:
            self._records = self._store.history(since=now - LOOKBACK_S)
        except sqlite3.Error as err:  # keep the last rates; the next refresh tries again
            log.warning("Cannot read the outcome history (%s); keeping the last rates.", err)
            return
        self._rated_for = None  # new records: recompute
