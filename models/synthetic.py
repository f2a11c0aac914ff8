"""A synthetic fleet with documented failure modes, for training and evaluation.

Each instance has a daily load cycle that drives CPU, requests, network and latency, plus
benign events that look alarming but end well (batch jobs, traffic surges, deploys), plus
incidents. An incident has a precursor that starts at ``onset``, a failure (or degradation
past the service objective) at ``failure_at`` and recovery at ``recovered_at``:

========================  ================================================================
mode                      precursor → failure
========================  ================================================================
``memory_leak``           memory climbs linearly for 2-8 h → OOM kill: restart, errors
``disk_degradation``      disk latency grows exponentially for 1-6 h → I/O stalls, errors
``cpu_runaway``           a spinning process drives CPU to 100 % in 0.5-2 h → latency, errors
``noisy_neighbour``       erratic disk and request latency for 1-3 h (stolen resources)
``network_flaps``         network throughput drops out ever more often for 1-2 h → errors
``overload``              requests grow 2-4x in 1-3 h → CPU saturates, latency explodes
``sudden_crash``          none: the instance vanishes (no data) and restarts
``disk_fill``             disk space fills linearly or accelerating for 1-8 h → full: writes
                          fail (errors, latency) until space is freed
========================  ================================================================

``disk_fill`` only happens with ``fill_ups_per_day > 0`` (the training fleet); the instance then
also reports ``disk_used_percent`` with harmless fills that stop short and are cleaned up. Its
draws come from a random stream of their own, so a fleet without fill-ups is exactly the fleet
this generator always made (the synthetic hold-out stays comparable).

``sudden_crash`` is there so the evaluation can show what no model can catch. Partial
observability is part of the data: metrics absent altogether, samples missing at random,
collector gaps (rows absent), timestamp jitter, corrupt values, and instances that expose a
single metric of unknown meaning (``other``), like the NAB series.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.signal import lfilter

from models.metrics import FloatArray

FAILURE_MODES = (
    "memory_leak", "disk_degradation", "cpu_runaway", "noisy_neighbour", "network_flaps",
    "overload", "sudden_crash",
)
"""The failure modes every fleet has (``disk_fill`` comes only with ``fill_ups_per_day``)."""
"""Every failure mode the generator produces."""

_PRECURSOR_H = {
    "memory_leak": (2.0, 8.0), "disk_degradation": (1.0, 6.0), "cpu_runaway": (0.5, 2.0),
    "noisy_neighbour": (1.0, 3.0), "network_flaps": (1.0, 2.0), "overload": (1.0, 3.0),
    "sudden_crash": (0.0, 0.0),
}
_OUTAGE_H = (0.25, 1.25)
_OTHER_SOURCES = ("cpu_percent", "memory_percent", "disk_latency_ms", "network_bytes",
                  "request_latency_ms", "requests_per_second")


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    """Size of the fleet and how imperfect its data is."""

    instances: int = 200
    """Number of instances."""
    days: float = 4.0
    """Length of every instance's history."""
    step_s: float = 300.0
    """Nominal sampling interval (NAB's 5 minutes)."""
    start: float = 1_700_000_000.0
    """Epoch seconds of the first sample."""
    incidents_per_day: float = 0.45
    """Mean incidents per instance-day."""
    benign_events_per_day: float = 1.5
    """Mean alarming-but-harmless events per instance-day."""
    metric_absent_probability: float = 0.25
    """Chance that an instance does not report a given metric at all."""
    other_only_probability: float = 0.15
    """Chance that an instance exposes one metric only, as ``other``, rescaled."""
    sample_missing_probability: float = 0.03
    """Chance that a single value is missing."""
    gaps_per_day: float = 0.5
    """Collector outages (rows absent) per instance-day, 10-60 minutes each."""
    jitter_s: float = 20.0
    """Timestamp jitter, uniform ± seconds."""
    corrupt_probability: float = 0.001
    """Chance that a value is garbage (NaN, negative, absurd)."""
    seed: int = 0
    """Random seed; the fleet is a pure function of this config."""
    fill_ups_per_day: float = 0.0
    """Mean ``disk_fill`` incidents per instance-day (0: no disk-space metric at all)."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict for model metadata."""
        return asdict(self)


@dataclass(frozen=True)
class Incident:
    """One failure of one instance."""

    mode: str
    """One of :data:`FAILURE_MODES`."""
    onset: float
    """Epoch seconds when the precursor starts (= ``failure_at`` for sudden crashes)."""
    failure_at: float
    """When the instance fails or degrades past its objective."""
    recovered_at: float
    """When it is healthy again."""


@dataclass
class SyntheticInstance:
    """One instance's history: raw values (garbage included) and its incidents."""

    instance_id: str
    """Name, ``syn-<seed>-<index>``."""
    times: FloatArray
    """Epoch seconds, increasing."""
    values: dict[str, FloatArray]
    """Canonical metric → raw values (NaN = missing); absent metrics are left out."""
    incidents: list[Incident] = field(default_factory=list)
    """Incidents in time order."""

    def labels(self, horizon_s: float) -> np.ndarray:
        """True where the instance fails or is degraded within ``horizon_s``."""
        label = np.zeros(self.times.shape, dtype=bool)
        for incident in self.incidents:
            label |= (self.times >= incident.failure_at - horizon_s) & (
                self.times < incident.recovered_at)
        return label


def generate_fleet(config: FleetConfig) -> list[SyntheticInstance]:
    """Generate the fleet described by ``config`` (deterministic)."""
    return [_instance(config, index) for index in range(config.instances)]


def _instance(config: FleetConfig, index: int) -> SyntheticInstance:
    rng = np.random.default_rng([config.seed, index])
    rows = int(config.days * 86400 / config.step_s)
    times = config.start + np.arange(rows) * config.step_s
    times = times + rng.uniform(-config.jitter_s, config.jitter_s, rows)
    values = _healthy(rng, times)
    incidents = _place_incidents(rng, config, times)
    for _ in range(rng.poisson(config.benign_events_per_day * config.days)):
        _benign_event(rng, times, values)
    for incident in incidents:
        _apply_incident(rng, times, values, incident)
    values = _observe(rng, config, values)
    keep = _collector_gaps(rng, config, times)
    if config.fill_ups_per_day > 0:
        fills = np.random.default_rng([config.seed, index, 1])
        values["disk_used_percent"], filled = _disk_space(fills, config, times, incidents)
        if filled:
            for incident in filled:
                _fill_up_effects(times, values, incident)
            incidents = sorted([*incidents, *filled], key=lambda i: i.onset)
    return SyntheticInstance(
        f"syn-{config.seed}-{index}", times[keep], {m: v[keep] for m, v in values.items()},
        incidents,
    )


def _ar1(rng: np.random.Generator, rows: int, sigma: float, phi: float = 0.8) -> FloatArray:
    noise = rng.normal(0.0, sigma * np.sqrt(1 - phi * phi), rows)
    noise[0] = rng.normal(0.0, sigma)
    return np.asarray(lfilter([1.0], [1.0, -phi], noise), dtype=np.float64)


def _healthy(rng: np.random.Generator, times: FloatArray) -> dict[str, FloatArray]:
    rows = times.shape[0]
    hour = (times / 3600.0 + rng.uniform(0, 24)) % 24
    load = 1 + rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * (hour - 9) / 24) + _ar1(rng, rows, 0.05)
    cpu = np.clip(rng.uniform(5, 55) * load + _ar1(rng, rows, 2.0), 0.5, 100)
    latency_base = rng.uniform(5, 80)
    return {
        "cpu_percent": cpu,
        "memory_percent": np.clip(rng.uniform(20, 70) + _ar1(rng, rows, 0.8, 0.95), 1, 100),
        "disk_latency_ms": rng.uniform(0.5, 8) * np.exp(rng.normal(0, 0.25, rows)) * load,
        "network_bytes": rng.uniform(1e6, 1e8) * load * np.exp(rng.normal(0, 0.15, rows)),
        "request_latency_ms": latency_base * (1 + 3 * np.maximum(cpu / 100 - 0.7, 0))
        * np.exp(rng.normal(0, 0.15, rows)),
        "requests_per_second": rng.uniform(10, 2000) * load * np.exp(rng.normal(0, 0.1, rows)),
        "error_rate": np.clip(rng.uniform(1e-4, 3e-3) * np.exp(rng.normal(0, 0.5, rows)), 0, 1),
        "replication_lag_bytes": rng.uniform(1e3, 1e6) * load * np.exp(rng.normal(0, 0.5, rows)),
        "restarts": np.full(rows, float(rng.integers(0, 5))),
    }


def _place_incidents(rng: np.random.Generator, config: FleetConfig,
                     times: FloatArray) -> list[Incident]:
    span_start, span_end = float(times[0]), float(times[-1])
    incidents: list[Incident] = []
    for _ in range(rng.poisson(config.incidents_per_day * config.days)):
        mode = str(rng.choice(FAILURE_MODES))
        low, high = _PRECURSOR_H[mode]
        precursor = rng.uniform(low, high) * 3600
        outage = rng.uniform(*_OUTAGE_H) * 3600
        failure_at = rng.uniform(span_start + precursor + 3 * 3600, span_end - 1800)
        candidate = Incident(mode, failure_at - precursor, failure_at, failure_at + outage)
        # Incidents on one instance do not overlap (plus 3 h of calm in between).
        if all(candidate.onset > other.recovered_at + 3 * 3600
               or candidate.recovered_at + 3 * 3600 < other.onset for other in incidents):
            incidents.append(candidate)
    return sorted(incidents, key=lambda incident: incident.onset)


def _benign_event(rng: np.random.Generator, times: FloatArray,
                  values: dict[str, FloatArray]) -> None:
    start = rng.uniform(times[0], times[-1])
    length = rng.uniform(0.3, 1.5) * 3600
    inside = (times >= start) & (times < start + length)
    kind = rng.integers(0, 3)
    if kind == 0:  # batch job: CPU and disk busy, then back to normal
        values["cpu_percent"][inside] = np.clip(
            values["cpu_percent"][inside] + rng.uniform(20, 40), 0, 100)
        values["disk_latency_ms"][inside] *= rng.uniform(1.5, 3)
    elif kind == 1:  # traffic surge the instance can take
        factor = rng.uniform(1.3, 1.8)
        for name in ("requests_per_second", "network_bytes"):
            values[name][inside] *= factor
        values["cpu_percent"][inside] = np.clip(values["cpu_percent"][inside] * factor, 0, 100)
        values["request_latency_ms"][inside] *= rng.uniform(1.1, 1.4)
    else:  # deploy: a restart, a short CPU blip
        values["restarts"][times >= start] += 1
        blip = inside & (times < start + 600)
        values["cpu_percent"][blip] = np.clip(values["cpu_percent"][blip] + 20, 0, 100)


def _apply_incident(rng: np.random.Generator, times: FloatArray,
                    values: dict[str, FloatArray], incident: Incident) -> None:
    precursor_s = max(incident.failure_at - incident.onset, 1.0)
    ramp = np.clip((times - incident.onset) / precursor_s, 0, 1)
    ramp[times >= incident.recovered_at] = 0.0
    during = (times >= incident.onset) & (times < incident.failure_at)
    down = (times >= incident.failure_at) & (times < incident.recovered_at)
    mode, v = incident.mode, values
    if mode == "memory_leak":
        v["memory_percent"] += (97.5 - v["memory_percent"]) * np.where(during, ramp, 0.0)
    elif mode == "disk_degradation":
        v["disk_latency_ms"] *= np.exp(np.log(rng.uniform(20, 60)) * np.where(during, ramp, 0) ** 2)
        v["disk_latency_ms"][down] = rng.uniform(150, 600) * np.exp(rng.normal(0, 0.3, down.sum()))
        v["request_latency_ms"] += 2 * v["disk_latency_ms"] * during
    elif mode == "cpu_runaway":
        v["cpu_percent"] += (99.5 - v["cpu_percent"]) * np.where(during, ramp, 0) ** 1.5
        v["request_latency_ms"] *= 1 + 4 * np.where(during, ramp, 0) ** 2
        v["cpu_percent"][down] = 100.0
    elif mode == "noisy_neighbour":
        jolts = np.exp(rng.normal(0, 0.6, times.shape)) * np.where(during, ramp, 0)
        v["request_latency_ms"] *= 1 + 6 * jolts
        v["disk_latency_ms"] *= 1 + 3 * jolts
    elif mode == "network_flaps":
        flapping = rng.random(times.shape) < 0.4 * np.where(during, ramp, 0) + 0.7 * down
        v["network_bytes"][flapping] *= 0.03
        v["error_rate"][flapping] += 0.03
    elif mode == "overload":
        grow = 1 + rng.uniform(1, 3) * np.where(during, ramp, 0)
        v["requests_per_second"] *= grow
        v["network_bytes"] *= grow
        v["cpu_percent"] = np.minimum(v["cpu_percent"] * grow, 100.0)
        v["request_latency_ms"] *= 1 + 6 * np.where(during, ramp, 0) ** 3
    if mode == "sudden_crash":
        for name in v:
            v[name][down] = np.nan
    else:
        v["request_latency_ms"][down] *= rng.uniform(5, 12)
        v["error_rate"][down] = np.clip(v["error_rate"][down] + rng.uniform(0.05, 0.2), 0, 1)
        v["replication_lag_bytes"][down] *= 10
    if mode in ("memory_leak", "sudden_crash"):
        v["restarts"][times >= incident.failure_at] += 1
    if mode == "memory_leak":
        after = times >= incident.failure_at
        v["memory_percent"][after] = np.minimum(v["memory_percent"][after], 60.0)


def _disk_space(rng: np.random.Generator, config: FleetConfig, times: FloatArray,
                incidents: list[Incident]) -> tuple[FloatArray, list[Incident]]:
    """Disk space in use: a slow drift with harmless fills that are cleaned up in time, and
    ``disk_fill`` incidents that reach 100 % (placed clear of the other incidents)."""
    rows = times.shape[0]
    used = np.clip(rng.uniform(20, 70) + np.cumsum(rng.normal(0, 0.01, rows)), 1, 95)
    for _ in range(rng.poisson(1.0 * config.days)):  # harmless fills: logs, a batch import
        start = rng.uniform(times[0], times[-1])
        length = rng.uniform(0.5, 4) * 3600
        ramp = np.clip((times - start) / length, 0, 1) * (times < start + length)
        used = np.minimum(used + rng.uniform(5, 20) * ramp, 97)
    filled: list[Incident] = []
    for _ in range(rng.poisson(config.fill_ups_per_day * config.days)):
        duration = rng.uniform(1, 8) * 3600
        failure_at = rng.uniform(times[0] + duration + 3 * 3600, times[-1] - 1800)
        candidate = Incident("disk_fill", failure_at - duration, failure_at,
                             failure_at + rng.uniform(0.25, 1.0) * 3600)
        if all(candidate.onset > other.recovered_at + 3 * 3600
               or candidate.recovered_at + 3 * 3600 < other.onset
               for other in [*incidents, *filled]):
            filled.append(candidate)
    for incident in filled:
        during = (times >= incident.onset) & (times < incident.failure_at)
        progress = (times[during] - incident.onset) / (incident.failure_at - incident.onset)
        start_level = float(np.interp(incident.onset, times, used))
        shape = rng.uniform(1.0, 2.0)  # 1: linear, 2: accelerating
        used[during] = start_level + (100.0 - start_level) * progress ** shape
        down = (times >= incident.failure_at) & (times < incident.recovered_at)
        used[down] = 100.0
        after = times >= incident.recovered_at
        used[after] = np.minimum(used[after], start_level)
    used = used + rng.normal(0, 0.05, rows)
    return np.clip(used, 0, 100), filled


def _fill_up_effects(times: FloatArray, values: dict[str, FloatArray],
                     incident: Incident) -> None:
    """A full disk: writes fail, so errors and latency jump until space is freed."""
    down = (times >= incident.failure_at) & (times < incident.recovered_at)
    if "error_rate" in values:
        values["error_rate"][down] = np.clip(values["error_rate"][down] + 0.2, 0, 1)
    if "request_latency_ms" in values:
        values["request_latency_ms"][down] *= 8


def _observe(rng: np.random.Generator, config: FleetConfig,
             values: dict[str, FloatArray]) -> dict[str, FloatArray]:
    """What a collector reports: absent metrics, missing samples, garbage values."""
    if rng.random() < config.other_only_probability:
        source = str(rng.choice(_OTHER_SOURCES))
        observed = {"other": values[source] * 10 ** rng.uniform(-2, 4)}
    else:
        observed = {
            m: v for m, v in values.items() if rng.random() >= config.metric_absent_probability
        }
        if not observed:
            observed = {"cpu_percent": values["cpu_percent"]}
    for name, series in observed.items():
        series = series.copy()
        series[rng.random(series.shape) < config.sample_missing_probability] = np.nan
        corrupt = rng.random(series.shape) < config.corrupt_probability
        series[corrupt] = rng.choice([np.nan, -1.0, 1e30, np.inf], corrupt.sum())
        observed[name] = series
    return observed


def _collector_gaps(rng: np.random.Generator, config: FleetConfig,
                    times: FloatArray) -> np.ndarray:
    keep = np.ones(times.shape, dtype=bool)
    for _ in range(rng.poisson(config.gaps_per_day * config.days)):
        start = rng.uniform(times[0], times[-1])
        keep &= ~((times >= start) & (times < start + rng.uniform(600, 3600)))
    return keep
