"""Per-instance baselines learned online: each instance is judged against its own history.

Two baselines, both updated causally one sample at a time (a sample is scored against the
state *before* it is learned, so an anomaly never hides in its own baseline):

**Seasonal robust location and scale** per column: a daily profile (24 hour-of-day slots,
each with a location and a scale) plus a weekly offset per day of the week. Location moves by
a clipped (Huber-style) step towards each sample, scale by the clipped absolute deviation
(times 1.253, the mean-absolute-deviation-to-sigma factor of a normal distribution); both forget
with a memory counted in samples per slot. The seasonal z of a sample is its distance from
``location[hour] + offset[weekday]`` in units of ``scale[hour]``.

**Multivariate novelty**: an exponentially weighted covariance of the instance's standardised
columns; every ``refresh_s`` its eigenvectors are recomputed (one batched ``eigh`` for every
instance due) and the components explaining ``explained`` of the variance (at most
``max_components``) are kept. A sample's novelty is its squared reconstruction error outside
those components (SPE, the "Q statistic"), divided by what the discarded components
explained, and Hotelling's T² inside them. It is the online form of the "PCA reconstruction
error against the instance's own normal" baseline: correlations that always held and break.

Why hand-written numpy rather than a library (measured by ``bench/baseline_libraries.py``,
results in ``bench/results/baseline_libraries.json``): the fleet scores every instance every
few seconds, so the state of 100,000 instances must update in a handful of vector operations.
scikit-learn's ``PCA``/``IsolationForest`` and pyod's ``ECOD`` are batch models refitted per
instance (13 to 600 microseconds per instance-sample amortised, one Python call per instance);
river's ``HalfSpaceTrees`` learns one sample of one instance per Python call (75 us);
statsmodels' ``STL`` decomposes a whole series at once. On the ASD servers (incidents flagged
in time at a label-free 0.1-per-day level), isolation forest, ECOD and half-space trees
flagged 0 or 1 of 55, batch PCA 7, this bank 11, and scikit-learn's ``IncrementalPCA`` fed one
day at a time 15: the best, but one model object per instance, so a fleet pays a Python call
per instance per day for learning and per batch for scoring. Its two differences from this
bank, no forgetting and a standardisation frozen on the first day, are the lead to follow;
the bank already took the longer memory (30 days) from that comparison. The libraries stay
the reference the benchmark compares against.

State lives in a :class:`BaselineBank`: arrays indexed by (instance, column), float32, about
``C x (24*3 + 7*2 + 2C + 6 + 6)`` floats per instance for ``C`` columns (6 KB at 19 columns). The
scoring activity keeps one bank per worker and saves it with :meth:`BaselineBank.save`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.baseline_config import (  # re-exported: the bank's public names
    BASELINE_FEATURE_NAMES,
    BASELINE_FEATURES,
    DAYS_PER_WEEK,
    SLOTS_PER_DAY,
    BaselineConfig,
    Float32Array,
    column_summaries,
)
from models.metrics import FloatArray, check_columns
from models.relative import learn_level

_Z_CLIP = 50.0
_RELATIVE_FLOOR = np.float32(0.01)
"""Scales never fall below 1 % of the level: a nearly constant column would otherwise turn
its last-digit noise into huge z scores (the window features use the same floor)."""
_HISTORY_CAP_H = 48.0
"""``history_h`` says how warm the baselines are, and nothing more: past two days every
baseline has learned (the novelty after one, the hour-of-day slots after half a day). A longer
cap would be a clock: on the ASD servers incidents only occur after the 30 unlabelled days,
so a feature reading "30 days of history" would leak the label through the calendar."""
_FORMAT = 1

__all__ = ["BASELINE_FEATURES", "BASELINE_FEATURE_NAMES", "DAYS_PER_WEEK", "SLOTS_PER_DAY",
           "BaselineBank", "BaselineConfig", "Float32Array", "series_baseline_features"]


class BaselineBank:
    """Online baselines of many instances, updated in vector operations across instances.

    Instances and columns are added as they appear; a column an instance does not have is
    NaN in its samples and learns nothing.
    """

    def __init__(self, config: BaselineConfig | None = None) -> None:
        self.config = config or BaselineConfig()
        """Memories and limits."""
        self.instances: dict[str, int] = {}
        """Instance id → row."""
        self.columns: list[str] = []
        """Column keys, in state order."""
        self._n = 0
        self._arrays: dict[str, np.ndarray] = {}
        self._allocate(0, 0)

    # -- public API ---------------------------------------------------------------------

    def features(self, instance_ids: Sequence[str], times: FloatArray,
                 values: Mapping[str, FloatArray]) -> Float32Array:
        """Learn every sample newer than what the bank has seen, return the newest's features.

        Args:
            instance_ids: one per row.
            times: (rows, W) epoch seconds, oldest first, NaN for padding.
            values: column key → (rows, W) sanitized values.

        Returns:
            (rows, len(BASELINE_FEATURES)) float32: the features of each row's newest sample,
            scored against the state before it was learned. A row whose newest sample the bank
            saw in an earlier call gets the features it had then (a window scored twice gives
            the same answer).
        """
        check_columns(values)
        rows = self._rows(instance_ids)
        columns = self._column_index(values)
        width = times.shape[1] if times.ndim == 2 else 0
        stacked = np.full((len(rows), len(self.columns), width), np.nan)
        for key, position in columns.items():
            stacked[:, position, :] = values[key]
        for j in range(width):
            at = times[:, j]
            active = np.flatnonzero(at > self._arrays["last_seen"][rows])
            if active.size:
                self._step(rows[active], at[active], stacked[active, :, j])
        out = self._arrays["features"][rows].copy()
        newest = times[:, -1] if width else np.full(len(rows), np.nan)
        stale = ~(self._arrays["last_seen"][rows] == newest)
        out[stale & ~(newest < self._arrays["last_seen"][rows])] = np.nan
        return out

    def usual_probability(self, instance_ids: Sequence[str], at: FloatArray,
                          probability: FloatArray) -> FloatArray:
        """Each instance's usual failure probability before ``at`` (NaN: none yet), then
        learn ``probability`` into it (:func:`models.relative.learn_level`). A reading at the
        time last learned gets the level it was judged against then (a window scored twice
        gives the same answer)."""
        rows = self._rows(instance_ids)
        a = self._arrays
        level, learned = a["usual"][rows], a["usual_at"][rows]
        again = at == learned
        before = np.where(again, a["usual_before"][rows], level)
        new_level, new_learned = learn_level(level, learned, probability, at)
        changed = new_learned != learned
        changed |= np.isnan(learned) & ~np.isnan(new_learned)
        a["usual_before"][rows[changed]] = level[changed]
        a["usual"][rows] = new_level
        a["usual_at"][rows] = new_learned
        return before.astype(np.float64)

    def save(self, path: Path) -> None:
        """Write the bank to ``path`` (``.npz``) atomically."""
        buffer = io.BytesIO()
        meta = {"format": _FORMAT, "config": self.config.to_dict(),
                "instances": list(self.instances), "columns": self.columns}
        arrays: dict[str, Any] = {k: v[: self._n] for k, v in self._arrays.items()}
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez_compressed(buffer, **arrays)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(buffer.getvalue())
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> BaselineBank:
        """Read a bank written by :meth:`save`.

        Raises:
            ValueError: not a bank file of this format.
        """
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in data.files if k != "meta"}
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path}: not a baseline bank ({err})") from err
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: baseline bank format {meta.get('format')!r}, this code "
                             f"reads {_FORMAT}")
        bank = cls(BaselineConfig(**meta["config"]))
        bank.instances = {iid: i for i, iid in enumerate(meta["instances"])}
        bank.columns = list(meta["columns"])
        bank._allocate(len(bank.instances), len(bank.columns))
        bank._n = len(bank.instances)
        for key, array in arrays.items():
            bank._arrays[key][: bank._n] = array
        return bank

    def expected(self, instance_id: str, at: float) -> dict[str, float]:
        """What is normal for ``instance_id`` at time ``at``: each column's seasonal location
        (hour-of-day slot plus weekday offset), NaN where a slot has not learned enough."""
        row = self.instances.get(instance_id)
        if row is None:
            return {}
        slot = int(at // 3600) % SLOTS_PER_DAY
        weekday = int(at // 86400 + 3) % DAYS_PER_WEEK
        location, count = self._arrays["daily"][row, slot, 0], self._arrays["daily"][row, slot, 2]
        offset, weekly = self._arrays["weekly"][row, weekday, 0], self._arrays["weekly"][
            row, weekday, 1]
        known = count >= self.config.seasonal_min_samples
        value = location + np.where(weekly >= self.config.seasonal_min_samples, offset, 0.0)
        return {key: float(value[i]) if known[i] else float("nan")
                for i, key in enumerate(self.columns)}

    def forget(self, instance_id: str) -> None:
        """Drop what the bank learned about an instance (it starts from scratch next time)."""
        row = self.instances.get(instance_id)
        if row is not None:
            self._reset(np.array([row]))

    # -- state --------------------------------------------------------------------------

    def _shapes(self, columns: int) -> dict[str, tuple[tuple[int, ...], float, type]]:
        k = self.config.max_components
        return {
            "last_seen": ((), -math.inf, np.float64),
            "first_seen": ((), np.nan, np.float64),
            "samples": ((), 0.0, np.float64),
            "last_refresh": ((), np.nan, np.float64),
            # Per slot: location, scale, samples learned (slot-major, so one slot of one
            # instance is a contiguous block: a gather is one row of a 2-D view).
            "daily": ((SLOTS_PER_DAY, 3, columns), 0.0, np.float32),
            # Per weekday: offset, samples learned.
            "weekly": ((DAYS_PER_WEEK, 2, columns), 0.0, np.float32),
            "mean": ((columns,), 0.0, np.float32),
            "var": ((columns,), 0.0, np.float32),
            "count": ((columns,), 0.0, np.float32),
            "cov": ((columns, columns), 0.0, np.float32),
            "frozen_mean": ((columns,), 0.0, np.float32),
            "frozen_sd": ((columns,), 1.0, np.float32),
            "components": ((columns, k), 0.0, np.float32),
            "eigenvalues": ((k,), 0.0, np.float32),
            "residual_scale": ((), np.nan, np.float32),
            "recent_spe": ((2,), np.nan, np.float32),
            "recent_z": ((2,), np.nan, np.float32),
            "features": ((len(BASELINE_FEATURES),), np.nan, np.float32),
            # The usual failure probability (models.relative): level, when it last learned,
            # and the level the last learned reading was judged against.
            "usual": ((), np.nan, np.float64),
            "usual_at": ((), np.nan, np.float64),
            "usual_before": ((), np.nan, np.float64),
        }

    def _allocate(self, capacity: int, columns: int) -> None:
        old, old_columns = self._arrays, (self._arrays["mean"].shape[1]
                                          if "mean" in self._arrays else 0)
        new: dict[str, np.ndarray] = {}
        for name, (shape, fill, dtype) in self._shapes(columns).items():
            array: np.ndarray = np.full((capacity, *shape), fill, dtype=dtype)
            if name in old and self._n:
                source = old[name][: self._n]
                index = tuple(slice(0, min(a, b)) for a, b in
                              zip(array.shape[1:], source.shape[1:], strict=True))
                array[(slice(0, self._n), *index)] = source[(slice(None), *index)]
            new[name] = array
        if columns > old_columns and "frozen_sd" in old:
            # A new column starts unknown: no location, no scale, no novelty weight.
            new["frozen_sd"][:, old_columns:] = 1.0
        self._arrays = new

    def _reset(self, rows: npt.NDArray[np.intp]) -> None:
        for name, (_, fill, _) in self._shapes(len(self.columns)).items():
            self._arrays[name][rows] = fill

    def _rows(self, instance_ids: Sequence[str]) -> npt.NDArray[np.intp]:
        new = [iid for iid in dict.fromkeys(instance_ids) if iid not in self.instances]
        if new:
            needed = self._n + len(new)
            capacity = self._arrays["last_seen"].shape[0]
            if needed > capacity:
                self._allocate(max(needed, capacity * 2, 16), len(self.columns))
            for iid in new:
                self.instances[iid] = self._n
                self._n += 1
        return np.array([self.instances[iid] for iid in instance_ids], dtype=np.intp)

    def _column_index(self, keys: Iterable[str]) -> dict[str, int]:
        keys = list(keys)
        new = [key for key in keys if key not in self.columns]
        if new:
            self.columns += new
            self._allocate(self._arrays["last_seen"].shape[0], len(self.columns))
        return {key: self.columns.index(key) for key in keys}

    # -- one sample per active row ------------------------------------------------------

    def _step(self, rows: npt.NDArray[np.intp], at: FloatArray, x: FloatArray) -> None:
        """Score then learn one sample of each of ``rows`` (x: (rows, C), NaN = missing)."""
        cfg, a = self.config, self._arrays
        at_rows: npt.NDArray[np.intp] | slice = _as_index(rows)
        x = x.astype(np.float32)
        present = x == x
        x0 = np.where(present, x, np.float32(0.0))
        slot = (np.floor(at / 3600.0) % SLOTS_PER_DAY).astype(np.intp)
        weekday = ((np.floor(at / 86400.0) + 3) % DAYS_PER_WEEK).astype(np.intp)
        first_seen = a["first_seen"][at_rows]
        fresh = np.isnan(first_seen)
        if fresh.any():
            first_seen = np.where(fresh, at, first_seen)
            a["first_seen"][at_rows] = first_seen
        columns = x.shape[1]
        daily = a["daily"].reshape(-1, 3, columns)  # views: (instance, slot) flattened
        weekly = a["weekly"].reshape(-1, 2, columns)
        index = rows * SLOTS_PER_DAY + slot
        index_w = rows * DAYS_PER_WEEK + weekday

        # --- score against the state before this sample ---------------------------------
        block, block_w = daily[index], weekly[index_w]
        loc, scale, count = block[:, 0], block[:, 1], block[:, 2]
        offset, weekly_count = block_w[:, 0], block_w[:, 1]
        mean, var, global_count = a["mean"][at_rows], a["var"][at_rows], a["count"][at_rows]
        sd = np.sqrt(var) + _RELATIVE_FLOOR * np.abs(mean) + np.float32(1e-9)
        expected = loc + np.where(weekly_count >= cfg.seasonal_min_samples, offset,
                                  np.float32(0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            seasonal_z = (x - expected) / np.maximum(scale, np.float32(0.1) * sd)
            global_z = (x - mean) / sd
        np.clip(seasonal_z, -_Z_CLIP, _Z_CLIP, out=seasonal_z)
        np.clip(global_z, -_Z_CLIP, _Z_CLIP, out=global_z)
        seasonal_known = present & (count >= cfg.seasonal_min_samples)
        global_known = present & (global_count >= cfg.seasonal_min_samples)
        spe, t2 = self._novelty(rows, at_rows, x0, present)
        features = column_summaries(seasonal_z, seasonal_known, global_z, global_known)
        recent_z, recent_spe = a["recent_z"][at_rows], a["recent_spe"][at_rows]
        features[:, 4] = np.fmax(features[:, 0], np.fmax(recent_z[:, 0], recent_z[:, 1]))
        features[:, 7] = spe
        features[:, 8] = t2
        features[:, 9] = np.fmax(spe, np.fmax(recent_spe[:, 0], recent_spe[:, 1]))
        features[:, 10] = np.minimum((at - first_seen) / 3600.0, _HISTORY_CAP_H)
        a["features"][at_rows] = features
        a["recent_z"][at_rows] = np.stack([recent_z[:, 1], features[:, 0]], axis=1)
        a["recent_spe"][at_rows] = np.stack([recent_spe[:, 1], spe], axis=1)

        # --- learn the sample: seasonal profile, weekday offsets --------------------------
        count = count + present
        rate = present / np.minimum(np.maximum(count, 1.0), cfg.daily_memory_samples,
                                    dtype=np.float32)
        residual = np.where(present, x - loc, np.float32(0.0))
        warm = count > cfg.seasonal_min_samples
        limit = np.where(warm, np.float32(3.0) * scale, np.float32(np.inf))
        new_loc = loc + rate * np.clip(residual, -limit, limit)
        spread = np.minimum(np.abs(residual) * np.float32(1.253),
                            np.where(warm, np.float32(5.0) * scale, np.float32(np.inf)))
        new_scale = scale + rate * (spread - scale)
        weekly_count = weekly_count + present
        weekly_rate = present / np.minimum(np.maximum(weekly_count, 1.0),
                                           cfg.weekly_memory_samples, dtype=np.float32)
        weekly_residual = np.where(present, x - new_loc - offset, np.float32(0.0))
        new_offset = offset + weekly_rate * np.clip(weekly_residual, -limit, limit)
        daily[index] = np.stack([new_loc, new_scale, count], axis=1)
        weekly[index_w] = np.stack([new_offset, weekly_count], axis=1)

        # --- overall mean and variance, then the covariance of the standardised sample ---
        global_count = global_count + present
        rate = present / np.minimum(np.maximum(global_count, 1.0), cfg.global_memory_samples,
                                    dtype=np.float32)
        deviation = np.where(present, x - mean, np.float32(0.0))
        first = present & (global_count == 1)
        new_mean = np.where(first, x0, mean + rate * deviation)
        squared = deviation * deviation
        bounded = np.where(global_count <= 10, squared,
                           np.minimum(squared, np.float32(25.0) * var + np.float32(1e-12)))
        new_var = np.where(first, np.float32(0.0), var + rate * (bounded - var))
        a["mean"][at_rows], a["var"][at_rows], a["count"][at_rows] = new_mean, new_var, global_count
        new_sd = np.sqrt(new_var) + _RELATIVE_FLOOR * np.abs(new_mean) + np.float32(1e-9)
        u = np.clip(np.where(present, (x - new_mean) / new_sd, np.float32(0.0)),
                    -cfg.clip, cfg.clip)
        samples = a["samples"][at_rows] + 1
        a["samples"][at_rows] = samples
        cov_rate = (1.0 / np.minimum(samples, cfg.global_memory_samples)).astype(np.float32)
        if isinstance(at_rows, slice):
            cov = a["cov"][at_rows]  # a view: updated in place
            cov *= (1.0 - cov_rate)[:, None, None]
            cov += (cov_rate[:, None] * u)[:, :, None] * u[:, None, :]
        else:
            cov = a["cov"][at_rows]
            cov *= (1.0 - cov_rate)[:, None, None]
            cov += (cov_rate[:, None] * u)[:, :, None] * u[:, None, :]
            a["cov"][at_rows] = cov
        a["last_seen"][at_rows] = at
        self._refresh_due(rows, at)

    def _novelty(self, rows: npt.NDArray[np.intp], at_rows: npt.NDArray[np.intp] | slice,
                 x0: Float32Array, present: npt.NDArray[np.bool_]
                 ) -> tuple[Float32Array, Float32Array]:
        a, cfg = self._arrays, self.config
        scale = a["residual_scale"][at_rows]
        usable = (present.sum(axis=1) >= cfg.min_columns) & (scale == scale)
        spe = np.full(rows.size, np.nan, dtype=np.float32)
        t2 = np.full(rows.size, np.nan, dtype=np.float32)
        if not usable.any():
            return spe, t2
        r = rows[usable]
        z = (x0[usable] - a["frozen_mean"][r]) / a["frozen_sd"][r]
        z = np.clip(np.where(present[usable], z, np.float32(0.0)), -_Z_CLIP, _Z_CLIP)
        components = a["components"][r]
        projected = np.einsum("nc,nck->nk", z, components)
        inside = projected * projected
        residual = (z * z).sum(axis=1) - inside.sum(axis=1)
        spe[usable] = np.log1p(np.maximum(residual, 0.0) / scale[usable])
        eigen = a["eigenvalues"][r]
        kept = (eigen > 0).sum(axis=1)
        t2[usable] = np.log1p((inside / np.where(eigen > 0, np.maximum(eigen, 1e-3), np.inf))
                              .sum(axis=1) / np.maximum(kept, 1))
        return spe, t2

    def _refresh_due(self, rows: npt.NDArray[np.intp], at: FloatArray) -> None:
        a, cfg = self._arrays, self.config
        last = a["last_refresh"][rows]
        since = np.where(np.isnan(last), at - a["first_seen"][rows], at - last)
        due = since >= cfg.refresh_s
        if not due.any():
            return
        r, when = rows[due], at[due]
        cov = a["cov"][r].astype(np.float64)
        eigenvalues, vectors = np.linalg.eigh(cov)  # ascending
        eigenvalues, vectors = np.maximum(eigenvalues[:, ::-1], 0.0), vectors[:, :, ::-1]
        total = eigenvalues.sum(axis=1)
        share = np.cumsum(eigenvalues, axis=1) / np.maximum(total, 1e-12)[:, None]
        columns = cov.shape[1]
        keep = np.minimum((share < cfg.explained).sum(axis=1) + 1,
                          min(cfg.max_components, max(columns - 1, 1)))
        width = min(cfg.max_components, columns)
        mask = np.arange(width)[None, :] < keep[:, None]
        components = np.zeros((r.size, columns, cfg.max_components))
        components[:, :, :width] = vectors[:, :, :width] * mask[:, None, :]
        kept_eigen = np.zeros((r.size, cfg.max_components))
        kept_eigen[:, :width] = np.where(mask, eigenvalues[:, :width], 0.0)
        discarded = total - kept_eigen.sum(axis=1)
        a["components"][r] = components
        a["eigenvalues"][r] = kept_eigen
        a["residual_scale"][r] = np.maximum(discarded, 1e-3 * np.maximum(total, 1e-6))
        a["frozen_mean"][r] = a["mean"][r]
        a["frozen_sd"][r] = (np.sqrt(a["var"][r]) + _RELATIVE_FLOOR * np.abs(a["mean"][r])
                             + np.float32(1e-9))
        a["last_refresh"][r] = when


def _as_index(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp] | slice:
    """A slice when ``rows`` is a contiguous ascending run (views instead of copies)."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and (
            rows.size < 3 or bool((np.diff(rows) == 1).all())):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def series_baseline_features(
    series: Sequence[tuple[FloatArray, Mapping[str, FloatArray]]],
    config: BaselineConfig | None = None,
) -> list[Float32Array]:
    """Causal baseline features at every sample of each series, all stepped in lockstep.

    Each series gets a fresh baseline that starts at its first row; row ``t``'s features are
    computed from rows ``0 .. t-1`` of the same series (and score row ``t`` itself), so the
    result for a prefix is the prefix of the result.

    Args:
        series: ``(times (T,), column key → (T,) sanitized values)`` per series; times
            non-decreasing (a row whose time does not advance is scored but not learned twice:
            it gets the features of the row before).
        config: memories and limits.
    """
    bank = BaselineBank(config)
    names = [f"s{i}" for i in range(len(series))]
    lengths = [int(times.shape[0]) for times, _ in series]
    longest = max(lengths, default=0)
    keys = list(dict.fromkeys(key for _, values in series for key in values))
    check_columns(keys)
    rows = bank._rows(names)
    positions = bank._column_index(keys)
    times_all = np.full((len(series), longest), np.nan)
    values_all = np.full((len(series), len(bank.columns), longest), np.nan)
    for i, (times, values) in enumerate(series):
        times_all[i, : lengths[i]] = times
        for key, column in values.items():
            values_all[i, positions[key], : lengths[i]] = column
    out = np.full((len(series), longest, len(BASELINE_FEATURES)), np.nan, dtype=np.float32)
    for j in range(longest):
        at = times_all[:, j]
        active = np.flatnonzero(at > bank._arrays["last_seen"][rows])
        if active.size:
            bank._step(rows[active], at[active], values_all[active, :, j])
        out[:, j] = bank._arrays["features"][rows]
    return [out[i, :n] for i, n in enumerate(lengths)]
