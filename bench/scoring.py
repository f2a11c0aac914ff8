"""``make bench-scoring``: instance-scores per second per core.

A fleet of synthetic windows (37 samples = 3 hours at 5-minute steps, 2 % of values missing)
is scored in batches exactly as the scoring activity does it: stack, compute features,
predict with LightGBM, compute readiness scores. Everything runs on one thread (numpy is
single-threaded here; LightGBM gets ``num_threads=1``), so the rate is per core. Cases:

- ``named_10``: the 10 named metrics a full collector reports (cpu … restarts, disk space);
- ``unnamed_19_with_baselines``: 19 unnamed ``other`` metrics, as an ASD server, *plus* the
  per-instance baselines: a :class:`~models.baselines.BaselineBank` that has already learned
  the instances' history learns the newest sample of each and scores it (the steady state of
  a fleet watcher calling every sampling interval). The bank's daily refresh of the novelty
  components (one ``eigh`` per instance per day) is timed apart and added, spread over the
  day's samples, in ``with_refresh_per_s_per_core``;
- ``local_collector_metrics`` and ``cpu_and_memory_only`` as before.

The policy is timed separately because it is plain Python per instance. Each case is
timed ``--repeat`` times; the report gives the median and the best.

Usage: ``python -m bench.scoring [--instances N] [--repeat R] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contracts.policy import FleetBudget, PolicyState
from models.baselines import BaselineBank
from models.features import window_features
from models.policy import Reading, decide
from models.predictor import DEFAULT_MODEL_PATH, Predictor
from models.scoring import score_windows, scores_from_features

RESULTS = Path(__file__).resolve().parent / "results" / "scoring.json"
WINDOW = 37
STEP_S = 300.0
SAMPLES_PER_DAY = 86400.0 / STEP_S
NAMED_10 = ("cpu_percent", "memory_percent", "disk_latency_ms", "network_bytes",
            "request_latency_ms", "requests_per_second", "error_rate", "replication_lag_bytes",
            "restarts", "disk_used_percent")
LOCAL = ("cpu_percent", "memory_percent", "disk_latency_ms", "network_bytes",
         "request_latency_ms", "error_rate", "replication_lag_bytes", "restarts")
UNNAMED_19 = tuple(f"other:m{i:02d}" for i in range(1, 20))


def _fleet(instances: int, columns: Sequence[str], seed: int = 0, start_step: int = 0,
           width: int = WINDOW, jitter_s: float = 10.0) -> tuple[Any, dict[str, Any]]:
    """Windows of ``width`` samples ending at step ``start_step + width - 1``; each instance
    keeps its clock offset whatever the seed, so consecutive batches overlap exactly."""
    offset = np.random.default_rng(12345).uniform(0, 60, (instances, 1))
    rng = np.random.default_rng(seed)
    steps = np.arange(start_step, start_step + width)
    times = 1.7e9 + offset + steps * STEP_S + rng.uniform(-jitter_s, jitter_s,
                                                          (instances, width))
    values = {}
    for column in columns:
        level = rng.uniform(5, 80, (instances, 1))
        series = level + rng.normal(0, 3, (instances, width)).cumsum(axis=1) * 0.3
        series = np.clip(np.abs(series), 0, 100)
        series[rng.random(series.shape) < 0.02] = np.nan
        values[column] = series.astype(np.float32)  # as before issue 19, for comparison
    return times, values


def _time(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _rate(instances: int, seconds: list[float]) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {"seconds_median": round(median, 4), "seconds_best": round(min(seconds), 4),
            "instance_scores_per_s_per_core": round(instances / median),
            "instance_scores_per_s_per_core_best": round(instances / min(seconds))}


def measure(predictor: Predictor, instances: int, columns: Sequence[str],
            repeat: int) -> dict[str, Any]:
    """Time features, prediction and readiness for one batch of ``instances`` windows."""
    times, values = _fleet(instances, columns)
    features = window_features(times, values, predictor.feature_config)
    features_s = _time(lambda: window_features(times, values, predictor.feature_config), repeat)
    predict_s = _time(lambda: predictor.predict(features, num_threads=1), repeat)
    total_s = _time(lambda: scores_from_features(
        window_features(times, values, predictor.feature_config), predictor, 0.0, "default",
        num_threads=1), repeat)
    return {"instances": instances, "columns": len(columns), "window_samples": WINDOW,
            "features_s_median": round(statistics.median(features_s), 4),
            "predict_s_median": round(statistics.median(predict_s), 4),
            **_rate(instances, total_s)}


def measure_with_baselines(predictor: Predictor, instances: int, columns: Sequence[str],
                           repeat: int) -> dict[str, Any]:
    """Steady-state fleet scoring with per-instance baselines (see the module docstring)."""
    bank = BaselineBank(predictor.baseline_config)
    ids = [f"i-{i}" for i in range(instances)]
    history = int(SAMPLES_PER_DAY) + 12  # past the first refresh: novelty is live
    times, values = _fleet(instances, columns, width=history, jitter_s=0.0)
    bank.features(ids, times, values)  # learn a day of history (not timed)
    batches = [_fleet(instances, columns, seed=1 + r, start_step=history - WINDOW + 1 + r,
                      jitter_s=0.0) for r in range(repeat)]
    durations = []
    baseline_s = []
    for batch_times, batch_values in batches:
        started = time.perf_counter()
        score_windows(batch_times, batch_values, predictor, 0.0, "default", num_threads=1,
                      baselines=bank, instance_ids=ids)
        durations.append(time.perf_counter() - started)
    for r in range(repeat):
        t, v = _fleet(instances, columns, seed=50 + r,
                      start_step=history - WINDOW + 1 + repeat + r, jitter_s=0.0)
        started = time.perf_counter()
        bank.features(ids, t, v)
        baseline_s.append(time.perf_counter() - started)
    # The daily refresh, timed on its own: one batched eigh over every instance.
    rows = np.arange(instances)
    bank._arrays["last_refresh"][rows] -= 2 * bank.config.refresh_s
    started = time.perf_counter()
    bank._refresh_due(rows, bank._arrays["last_seen"][rows])
    refresh_s = time.perf_counter() - started
    median = statistics.median(durations)
    per_sample_refresh = refresh_s / SAMPLES_PER_DAY
    return {"instances": instances, "columns": len(columns), "window_samples": WINDOW,
            "new_samples_per_instance_per_call": 1,
            "baselines_s_median": round(statistics.median(baseline_s), 4),
            "daily_refresh_s": round(refresh_s, 4),
            "bank_bytes_per_instance": int(sum(a.nbytes for a in bank._arrays.values())
                                           / bank._arrays["last_seen"].shape[0]),
            **_rate(instances, durations),
            "with_refresh_per_s_per_core": round(instances / (median + per_sample_refresh))}


def measure_policy(instances: int, repeat: int) -> dict[str, Any]:
    """Time one policy decision over a batch of ``instances`` readings."""
    rng = np.random.default_rng(1)
    readings = [Reading(f"i-{i}", float(s)) for i, s in enumerate(rng.uniform(0, 100, instances))]
    seconds = _time(lambda: decide(PolicyState(), FleetBudget(), readings, 1.7e9), repeat)
    return {"instances": instances, "seconds_median": round(statistics.median(seconds), 4),
            "decisions_per_s": round(instances / statistics.median(seconds))}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print it, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--baseline-instances", type=int, default=20_000,
                        help="fleet size of the case with baselines (their state is ~7 KB "
                             "per instance at 19 columns)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    predictor = Predictor.load(args.model)
    report: dict[str, Any] = {
        "model": {"sha256": predictor.model_sha256,
                  "trees": predictor.metadata.get("best_iteration"),
                  "features": len(predictor.metadata["feature_names"])},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "named_10": measure(predictor, args.instances, NAMED_10, args.repeat),
        "unnamed_19_with_baselines": measure_with_baselines(
            predictor, args.baseline_instances, UNNAMED_19, args.repeat),
        "local_collector_metrics": measure(predictor, args.instances, LOCAL, args.repeat),
        "cpu_and_memory_only": measure(predictor, args.instances,
                                       ["cpu_percent", "memory_percent"], args.repeat),
        "policy": measure_policy(args.instances, args.repeat),
        "goals_instance_scores_per_s_per_core": {"named_10": 100_000,
                                                 "unnamed_19_with_baselines": 30_000},
    }
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    for name in ("named_10", "unnamed_19_with_baselines", "local_collector_metrics",
                 "cpu_and_memory_only"):
        r = report[name]
        print(f"{name:28} {r['instances']} instances x {r['columns']} columns: median "
              f"{r['seconds_median']} s -> {r['instance_scores_per_s_per_core']:,} "
              f"instance-scores/s/core (best {r['instance_scores_per_s_per_core_best']:,})")
    p = report["policy"]
    print(f"{'policy':28} {p['instances']} decisions in {p['seconds_median']} s -> "
          f"{p['decisions_per_s']:,}/s")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
