"""``make bench-retrain``: what a retraining run costs and decides, and what hot reload costs.

1. A retraining run at production size (the default :class:`RetrainingConfig`: the synthetic
   base fleet of ``make model`` plus NAB when ``../shared/data/nab`` exists, no outcome
   records) and a control trained on permuted labels, each compared with the shipped model
   on the same held-out rows by the promotion rule. Without new outcomes the first must
   reproduce the shipped model (same data, deterministic training), so it cannot win; the
   control must lose.
2. Hot reload: the per-batch cost of checking the version pointer (one ``stat``) next to the
   cost of scoring a batch of 1,000 instances, the duration of the first batch after a
   promotion (it includes loading the new model) and of a model load alone.

Medians of repeated timings; the machine's load average is recorded with them.

Usage: ``python -m bench.retraining [--quick] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from activities.scoring import FleetScorer, MetricWindow, ScoreInstancesInput
from models.nab import nab_available
from models.predictor import DEFAULT_MODEL_PATH, Predictor
from models.registry import ModelRegistry
from models.retraining import RetrainingConfig, beats, score, train_candidate

RESULTS = Path(__file__).resolve().parent / "results" / "retraining.json"


def retrain(config: RetrainingConfig, folder: Path, champion: Predictor) -> dict[str, Any]:
    """Train one challenger and apply the promotion rule against ``champion``."""
    started = time.perf_counter()
    candidate = train_candidate(config, [], folder / "pae.txt")
    training_s = time.perf_counter() - started
    challenger = Predictor.load(candidate.model_path)
    with np.load(candidate.heldout_path) as heldout:
        features, labels = heldout["features"], heldout["labels"]
    champion_score = score(champion, features, labels)
    challenger_score = score(challenger, features, labels)
    promote, reason = beats(champion_score, challenger_score, int(labels.sum()), config)
    return {
        "training_s": round(training_s, 2),
        "rows": candidate.rows,
        "heldout_rows": candidate.heldout_rows,
        "heldout_positives": candidate.heldout_positives,
        "champion_average_precision": champion_score,
        "challenger_average_precision": challenger_score,
        "identical_to_champion": challenger.model_sha256 == champion.model_sha256,
        "promoted": promote,
        "reason": reason,
    }


def _batch(instances: int) -> ScoreInstancesInput:
    rng = np.random.default_rng(0)
    times = [1.7e9 + 300.0 * i for i in range(37)]
    windows = [MetricWindow(f"db-{i}", times, {
        "cpu_percent": list(rng.uniform(5, 90, 37)),
        "memory_percent": list(rng.uniform(5, 90, 37)),
    }) for i in range(instances)]
    return ScoreInstancesInput(windows, times[-1])


def hot_reload(folder: Path, instances: int, repeat: int) -> dict[str, Any]:
    """Pointer-check cost per batch, batch cost, promotion-to-use latency."""
    registry = ModelRegistry(folder / "registry")
    scoring = FleetScorer.from_registry(registry)
    request = _batch(instances)
    checks: list[int] = []
    for _ in range(repeat * 100):
        started_ns = time.perf_counter_ns()
        scoring.refresh()
        checks.append(time.perf_counter_ns() - started_ns)
    batches: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        scoring.score(request)
        batches.append(time.perf_counter() - started)
    pickups: list[float] = []
    for i in range(repeat):
        registry.promote(DEFAULT_MODEL_PATH, candidate_id=f"bench-{i}")
        started = time.perf_counter()
        result = scoring.score(request)
        pickups.append(time.perf_counter() - started)
        assert result.model_version == i + 1, "the promoted model was not picked up"
    loads: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        Predictor.load(DEFAULT_MODEL_PATH)
        loads.append(time.perf_counter() - started)
    check_us = statistics.median(checks) / 1000
    batch_ms = statistics.median(batches) * 1000
    return {
        "batch_instances": instances,
        "pointer_check_us_median": round(check_us, 2),
        "batch_ms_median": round(batch_ms, 2),
        "pointer_check_share_of_batch": round(check_us / 1000 / batch_ms, 6),
        "first_batch_after_promotion_ms_median": round(statistics.median(pickups) * 1000, 2),
        "model_load_ms_median": round(statistics.median(loads) * 1000, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts, print and write the results."""
    parser = argparse.ArgumentParser(prog="python -m bench.retraining", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a 60-instance, 3-day fleet without NAB (seconds, not minutes)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    config = RetrainingConfig()
    if args.quick:
        config = RetrainingConfig(instances=60, days=3.0, seed=11, use_nab=False)
    champion = Predictor.load(DEFAULT_MODEL_PATH)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        results: dict[str, Any] = {
            "config": {**vars(config), "quick": args.quick,
                       "nab_used": config.use_nab and nab_available()},
            "retrain": retrain(config, folder / "retrain", champion),
            "shuffled_labels_control": retrain(
                replace(config, label_permutation_seed=1), folder / "control", champion),
            "hot_reload": hot_reload(folder, instances=1000, repeat=5 if args.quick else 20),
        }
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    results["cpus"] = os.cpu_count()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
