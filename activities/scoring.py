"""The fleet watcher's scorer: a batch of metric windows in, probabilities, scores and
decisions out (plain method calls inside the watcher's activity, not an activity itself).

The worker loads the model once and hands the :class:`~models.predictor.Predictor` to
:class:`FleetScorer`; :meth:`FleetScorer.reload` swaps in a new model file and
keeps the current one if the new file is refused. Built with a
:class:`~models.registry.ModelRegistry`, the activities also pick up promoted models without
a restart: before each batch one ``stat`` of the registry's version pointer tells whether a
promotion happened, and only then is the new model loaded (a refused file is logged once and
the previous model keeps scoring until the pointer changes again).

The policy's memory travels in the request and comes back in the result, so the watcher owns
it (and carries it across its runs). What the scorer keeps is each instance's own history:
the per-instance baselines (:mod:`activities.baselines`), learned from every sample the
watcher sends, saved in the state dir, and started afresh when a new model reads them with
other memories.

Window keys are column keys (``cpu_percent``, ``other:m07``, ``disk_used_percent:/var``), so
an instance may report any number of unnamed metrics. A decision's reason carries the
exhaustion forecast when a resource is running out ("... Forecast: disk full in 38 min.").
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from activities.baselines import Baselines
from contracts.policy import FleetBudget, Policy, PolicyState
from models.metrics import FloatArray, check_columns, empty_counts, sanitize
from models.policy import Reading, decide
from models.predictor import ModelError, Predictor
from models.readiness import PROFILES, Profile
from models.registry import DEFAULT_VERSION, ModelRegistry
from models.scoring import score_windows

log = logging.getLogger(__name__)


@dataclass
class MetricWindow:
    """Recent samples of one instance, oldest first (about 3 hours at 5-minute steps)."""

    instance_id: str
    """The instance."""
    timestamps: list[float]
    """Epoch seconds of each sample; the newest is the decision time for this instance."""
    values: dict[str, list[float | None]]
    """Column key (a metric kind, or ``kind:label`` such as ``other:m07``) → one value per
    timestamp (``None`` = not collected)."""
    historical_failure_rate: float = 0.0
    """The instance's failure history, 0..1 (the watcher reads it from the outcome store)."""
    policy: Policy = field(default_factory=Policy)
    """The instance's policy (threshold, hysteresis, advisory, readiness profile)."""


@dataclass
class ScoreInstancesInput:
    """A batch to score and the policy to decide with."""

    windows: list[MetricWindow]
    """One window per instance."""
    now: float
    """Decision time (the watcher's clock), epoch seconds."""
    budget: FleetBudget = field(default_factory=FleetBudget)
    """The fleet's budget and maintenance windows."""
    policy_state: PolicyState = field(default_factory=PolicyState)
    """The policy's memory from the previous call."""


@dataclass
class InstanceScore:
    """The verdict on one instance."""

    instance_id: str
    """The instance."""
    failure_probability: float
    """Probability of failure or degradation within the model's horizon (NaN: no data)."""
    readiness_score: float
    """Migration Readiness Score, 0..100."""
    decision: str
    """``hold`` or ``migrate``."""
    act: bool
    """Whether to carry the decision out (false in advisory mode)."""
    reason: str
    """One sentence for the log."""
    ignored_values: int
    """Values of this window that were missing, NaN, negative or absurd."""
    forecast: str | None = None
    """The resource that runs out soonest within 48 h at its trend ("disk full in 38 min"),
    or ``None``; also the end of :attr:`reason`."""


@dataclass
class ScoreInstancesResult:
    """Verdicts in input order, the policy's new memory and the model that scored."""

    scores: list[InstanceScore]
    """One per window."""
    policy_state: PolicyState
    """Pass this to the next call."""
    model_sha256: str
    """Identity of the model file used."""
    ignored: dict[str, int]
    """Ignored values of the whole batch, by kind."""
    model_version: int = DEFAULT_VERSION
    """Registry version of the model used (0 = the shipped default)."""


class ScoreError(ValueError):
    """A batch cannot be scored (unknown metric, misshapen window, unknown profile)."""


class FleetScorer:
    """One loaded failure model (hot-reloaded from the registry) and the policy."""

    def __init__(self, predictor: Predictor, registry: ModelRegistry | None = None,
                 version: int = DEFAULT_VERSION,
                 stamp: tuple[int, int, int] | None = None,
                 baselines_path: Path | None = None) -> None:
        """Args:
            predictor: the model to start with.
            registry: where promoted models appear (``None``: this model only).
            version: the model's registry version.
            stamp: the registry pointer's stamp when ``predictor`` was loaded.
            baselines_path: where the per-instance baselines are kept (``None``: in memory).
        """
        self._model = (predictor, version)
        self._lock = threading.Lock()
        self._registry = registry
        self._stamp = stamp
        self.baselines = Baselines(predictor.baseline_config, baselines_path)
        """Every instance's own history (baseline features), learned while scoring."""

    @classmethod
    def from_registry(cls, registry: ModelRegistry,
                      baselines_path: Path | None = None) -> FleetScorer:
        """Start with the registry's current model (the shipped default before any promotion).

        Raises:
            ModelError: neither the current model nor the shipped default can be loaded.
        """
        stamp = registry.pointer_stamp()
        predictor, pointer = registry.load_current()
        return cls(predictor, registry, pointer.version, stamp, baselines_path)

    @property
    def predictor(self) -> Predictor:
        """The model in use."""
        return self._model[0]

    @property
    def model_version(self) -> int:
        """Registry version of the model in use."""
        return self._model[1]

    def refresh(self) -> None:
        """Switch to a newly promoted model if the registry's pointer changed (one ``stat``)."""
        if self._registry is None:
            return
        stamp = self._registry.pointer_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return  # another thread got here first
            self._stamp = stamp  # a refused file is tried once, not on every batch
            try:
                pointer = self._registry.current()
                if pointer.version == self.model_version:
                    return
                loaded = Predictor.load(Path(pointer.model_path))
            except ModelError as err:
                log.warning("Promoted model refused, keeping %s: %s", self.predictor.source, err)
                return
            # One assignment, so a batch never pairs one model with another's version.
            self._model = (loaded, pointer.version)
        self.baselines.follow(loaded.baseline_config)
        log.info("Now scoring with model %s (sha256 %s).", pointer.label, loaded.model_sha256[:12])

    def reload(self, model_path: Path | None = None) -> bool:
        """Load ``model_path`` (default: the current model's file) and switch to it.

        The registry version is kept: this is for reloading a model file in place.

        Returns:
            True if the new model is in use; False if it was refused (the message is logged
            and the previous model keeps scoring).
        """
        path = model_path or self.predictor.source
        with self._lock:
            try:
                loaded = Predictor.load(path)
            except ModelError as err:
                log.warning("Model reload refused, keeping %s: %s", self.predictor.source, err)
                return False
            self._model = (loaded, self.model_version)
        self.baselines.follow(loaded.baseline_config)
        log.info("Model reloaded from %s (sha256 %s).", path, loaded.model_sha256[:12])
        return True

    def score(self, request: ScoreInstancesInput) -> ScoreInstancesResult:
        """Score every window (each with its own profile) and run the policy on the batch.

        Raises:
            ScoreError: an unknown profile or metric, or a misshapen window.
        """
        unknown = sorted({w.policy.profile for w in request.windows} - set(PROFILES))
        if unknown:
            raise ScoreError(f"unknown profile {unknown[0]!r}; use one of {', '.join(PROFILES)}")
        self.refresh()
        predictor, version = self._model  # one model for the whole batch, even during a reload
        try:
            times, values, ignored_per_window, counts = windows_to_arrays(request.windows)
        except ValueError as err:
            raise ScoreError(str(err)) from err
        history = np.array([w.historical_failure_rate for w in request.windows], dtype=np.float64)
        probability = np.full(len(request.windows), np.nan)
        readiness = np.full(len(request.windows), np.nan)
        forecasts: list[str | None] = [None] * len(request.windows)
        ids = [w.instance_id for w in request.windows]
        with self.baselines.use() as bank:
            for profile in sorted({w.policy.profile for w in request.windows}):
                rows = np.array([w.policy.profile == profile for w in request.windows])
                scores = score_windows(times[rows], {m: v[rows] for m, v in values.items()},
                                       predictor, history[rows], cast(Profile, profile),
                                       baselines=bank,
                                       instance_ids=[ids[i] for i in np.flatnonzero(rows)])
                probability[rows], readiness[rows] = scores.failure_probability, \
                    scores.readiness_score
                for k, row in enumerate(np.flatnonzero(rows).tolist()):
                    forecasts[row] = scores.forecast_text(k)
        # No usable value at all: there is nothing to judge, so no score (the policy holds).
        blind = ~np.any([~np.isnan(v).all(axis=1) for v in values.values()] or
                        [np.zeros(len(request.windows), dtype=bool)], axis=0)
        probability[blind] = np.nan
        readiness[blind] = np.nan
        readings = [Reading(w.instance_id, s, w.policy)
                    for w, s in zip(request.windows, readiness.tolist(), strict=True)]
        decisions, state = decide(request.policy_state, request.budget, readings, request.now)
        for decision, forecast in zip(decisions, forecasts, strict=True):
            if decision.action == "migrate":
                log.info("%s %s", decision.instance_id, _with_forecast(decision.reason, forecast))
        return ScoreInstancesResult(
            scores=[
                InstanceScore(w.instance_id, p, s, d.action, d.act, _with_forecast(d.reason, f),
                              n, f)
                for w, p, s, d, n, f in zip(
                    request.windows, probability.tolist(), readiness.tolist(), decisions,
                    ignored_per_window, forecasts, strict=True)
            ],
            policy_state=state,
            model_sha256=predictor.model_sha256,
            ignored=counts,
            model_version=version,
        )


def windows_to_arrays(
    windows: list[MetricWindow],
) -> tuple[FloatArray, dict[str, FloatArray], list[int], dict[str, int]]:
    """Stack windows into (rows, W) arrays, left-padded with NaN, values sanitized.

    Raises:
        ValueError: a key that is not a column key (``kind`` or ``kind:label``), or a value
            list whose length differs from the timestamps'.
    """
    width = max((len(w.timestamps) for w in windows), default=1) or 1
    rows = len(windows)
    times = np.full((rows, width), np.nan)
    present = sorted({m for w in windows for m in w.values})
    try:
        check_columns(present)
    except KeyError as err:  # KeyError quotes its message; the text is the same without
        raise ValueError(err.args[0] if err.args else str(err)) from None
    values = {m: np.full((rows, width), np.nan) for m in present}
    counts = empty_counts()
    per_window = []
    for row, window in enumerate(windows):
        n = len(window.timestamps)
        window_counts = empty_counts()
        order = np.argsort(np.asarray(window.timestamps, dtype=np.float64), kind="stable")
        if n:
            times[row, width - n:] = np.asarray(window.timestamps, dtype=np.float64)[order]
        for metric, raw in window.values.items():
            if len(raw) != n:
                raise ValueError(f"{window.instance_id}: {metric} has {len(raw)} values for "
                                 f"{n} timestamps")
            if n:
                values[metric][row, width - n:] = sanitize(metric, raw, window_counts)[order]
        per_window.append(sum(window_counts.values()))
        for kind, count in window_counts.items():
            counts[kind] += count
    # An empty window has no decision time; give it one so its features are simply unknown.
    empty = np.isnan(times[:, -1])
    times[empty, -1] = 0.0
    return times, values, per_window, counts


def _with_forecast(reason: str, forecast: str | None) -> str:
    """The decision's sentence, with the exhaustion forecast when there is one."""
    return f"{reason} Forecast: {forecast}." if forecast else reason
