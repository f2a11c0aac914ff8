"""``make bench-scoring``: instance-scores per second per core.

A fleet of synthetic windows (every metric present, 37 samples = 3 hours at 5-minute steps,
2 % of values missing) is scored in batches exactly as the scoring activity does it: stack,
compute features, predict with LightGBM, compute readiness scores. Everything runs on one
thread (numpy is single-threaded here; LightGBM gets ``num_threads=1``), so the rate is per
core. The policy is timed separately because it is plain Python per instance.

Usage: ``python -m bench.scoring [--instances N] [--repeat R] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contracts.policy import FleetBudget, PolicyState
from models.features import window_features
from models.metrics import METRICS
from models.policy import Reading, decide
from models.predictor import DEFAULT_MODEL_PATH, Predictor
from models.scoring import scores_from_features

RESULTS = Path(__file__).resolve().parent / "results" / "scoring.json"
WINDOW = 37
STEP_S = 300.0


def _fleet(instances: int, metrics: Sequence[str], seed: int = 0) -> tuple[Any, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    start = 1.7e9 + rng.uniform(0, 60, (instances, 1))
    times = start + np.arange(WINDOW) * STEP_S + rng.uniform(-10, 10, (instances, WINDOW))
    values = {}
    for metric in metrics:
        level = rng.uniform(5, 80, (instances, 1))
        series = level + rng.normal(0, 3, (instances, WINDOW)).cumsum(axis=1) * 0.3
        series = np.abs(series)
        series[rng.random(series.shape) < 0.02] = np.nan
        values[metric] = series.astype(np.float32)
    return times, values


def _time(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure(predictor: Predictor, instances: int, metrics: Sequence[str],
            repeat: int) -> dict[str, Any]:
    """Time features, prediction and readiness for one batch of ``instances`` windows."""
    times, values = _fleet(instances, metrics)
    features = window_features(times, values, predictor.feature_config)
    features_s = _time(lambda: window_features(times, values, predictor.feature_config), repeat)
    predict_s = _time(lambda: predictor.predict(features, num_threads=1), repeat)
    total_s = _time(lambda: scores_from_features(
        window_features(times, values, predictor.feature_config), predictor, 0.0, "default",
        num_threads=1), repeat)
    return {
        "instances": instances, "metrics_present": len(metrics), "window_samples": WINDOW,
        "features_s": round(features_s, 4), "predict_s": round(predict_s, 4),
        "total_s": round(total_s, 4),
        "instance_scores_per_s_per_core": round(instances / total_s),
    }


def measure_policy(instances: int, repeat: int) -> dict[str, Any]:
    """Time one policy decision over a batch of ``instances`` readings."""
    rng = np.random.default_rng(1)
    readings = [Reading(f"i-{i}", float(s)) for i, s in enumerate(rng.uniform(0, 100, instances))]
    seconds = _time(lambda: decide(PolicyState(), FleetBudget(), readings, 1.7e9), repeat)
    return {"instances": instances, "seconds": round(seconds, 4),
            "decisions_per_s": round(instances / seconds)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print it, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    predictor = Predictor.load(args.model)
    local = [m for m in METRICS if m not in ("other", "requests_per_second")]
    report: dict[str, Any] = {
        "model": {"sha256": predictor.model_sha256,
                  "trees": predictor.metadata.get("best_iteration")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "all_metrics": measure(predictor, args.instances, METRICS, args.repeat),
        "local_collector_metrics": measure(predictor, args.instances, local, args.repeat),
        "cpu_and_memory_only": measure(predictor, args.instances,
                                       ["cpu_percent", "memory_percent"], args.repeat),
        "policy": measure_policy(args.instances, args.repeat),
        "goal_instance_scores_per_s_per_core": 100_000,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    for name in ("all_metrics", "local_collector_metrics", "cpu_and_memory_only"):
        r = report[name]
        print(f"{name:24} {r['instances']} instances x {r['metrics_present']} metrics x "
              f"{r['window_samples']} samples: features {r['features_s']} s + predict "
              f"{r['predict_s']} s -> {r['instance_scores_per_s_per_core']:,} "
              "instance-scores/s/core")
    p = report["policy"]
    print(f"{'policy':24} {p['instances']} decisions in {p['seconds']} s -> "
          f"{p['decisions_per_s']:,}/s")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
