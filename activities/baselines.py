"""The worker's per-instance baselines: one :class:`~models.baselines.BaselineBank`, kept on
disk in the state dir, owned by the fleet scorer.

Why the worker keeps them and not the watcher's heartbeat: the bank holds about 9 KB per
instance at 19 columns (a fleet's worth is megabytes to a gigabyte), far past what a Temporal
heartbeat or workflow input should carry, and it is a pure function of the samples already
seen, so losing the last few minutes of it costs only those minutes of learning. It is saved
every :data:`SAVE_INTERVAL_S` and at shutdown with an atomic rename (a crash mid-save leaves
the previous file), and loaded at start; an unreadable or foreign file starts a fresh bank
with a warning rather than stopping the worker.

A bank learned under one model's :class:`~models.baselines.BaselineConfig` (its memories) is
not what another model was trained to read, so a model change with a different config starts
a fresh bank. The bank is not thread-safe: every use goes through :meth:`Baselines.use`, which
holds one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.baselines import BaselineBank, BaselineConfig

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 300.0
"""How often the bank is written while the worker scores (at most a few minutes of learning
are lost with the worker)."""


class Baselines:
    """One bank, its file and its lock."""

    def __init__(self, config: BaselineConfig, path: Path | None = None,
                 save_interval_s: float = SAVE_INTERVAL_S) -> None:
        """Load the bank from ``path`` if it holds one for ``config``, else start fresh.

        Args:
            config: the scoring model's baseline config.
            path: where the bank lives (``None``: in memory only, never saved).
            save_interval_s: minimum seconds between two saves during scoring.
        """
        self.path = path
        self._save_interval_s = save_interval_s
        self._lock = threading.Lock()
        self._bank = self._load(config)
        self._next_save = time.monotonic() + save_interval_s

    @property
    def config(self) -> BaselineConfig:
        """The memories the bank learns with."""
        return self._bank.config

    @property
    def instances(self) -> int:
        """Instances the bank knows."""
        return len(self._bank.instances)

    @contextmanager
    def use(self) -> Iterator[BaselineBank]:
        """The bank, exclusively, for one batch; saved afterwards when a save is due."""
        with self._lock:
            yield self._bank
            if self.path is not None and time.monotonic() >= self._next_save:
                self._save_locked()

    def follow(self, config: BaselineConfig) -> None:
        """The scoring model changed: keep the bank if it learns with ``config``, else start
        a fresh one (a bank with other memories is not what the new model was trained on)."""
        with self._lock:
            if config == self._bank.config:
                return
            log.info("The new model's baselines use other memories; starting fresh baselines "
                     "for %d instances.", len(self._bank.instances))
            self._bank = BaselineBank(config)
            if self.path is not None:
                self._save_locked()

    def save(self) -> None:
        """Write the bank now (the worker calls this at shutdown)."""
        if self.path is None:
            return
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        assert self.path is not None
        self._next_save = time.monotonic() + self._save_interval_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._bank.save(self.path)
        except OSError as err:  # a full disk must not stop the scoring
            log.warning("Cannot save the baselines to %s: %s", self.path, err)

    def _load(self, config: BaselineConfig) -> BaselineBank:
        if self.path is None or not self.path.exists():
            return BaselineBank(config)
        try:
            bank = BaselineBank.load(self.path)
        except (ValueError, TypeError, KeyError) as err:  # foreign, damaged or older file
            log.warning("Starting fresh baselines: %s", err)
            return BaselineBank(config)
        if bank.config != config:
            log.info("Saved baselines in %s use other memories than the model; starting "
                     "fresh.", self.path)
            return BaselineBank(config)
        log.info("Loaded baselines of %d instances from %s.", len(bank.instances), self.path)
        return bank
