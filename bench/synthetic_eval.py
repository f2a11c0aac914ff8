"""The synthetic hold-outs of the evaluation: the fleet the model never saw, and disk fill-ups.

Counted as before issue 19 (an alarm from ``min(onset, failure - horizon)`` to recovery catches
an incident) at fixed operating points, so the figures compare with the old ones; a sweep
of thresholds gives the recall at the old false-migration rate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from bench.counting import EvalSeries, count, distribution, random_control
from bench.detectors import Episode, migrations, model_scores, windowed_gaussian
from contracts.policy import Policy
from models.dataset import from_synthetic
from models.features import series_features
from models.predictor import Predictor
from models.synthetic import FleetConfig, generate_fleet

HOLDOUT_SEED = 1001
SYNTHETIC_THRESHOLD = {"model_default": Policy().threshold, "model_spec": 70.0,
                       "windowed_gaussian": 4.0}
"""Fixed operating points of the synthetic hold-out (as before this issue)."""


def synthetic_holdout(predictor: Predictor, fleet: FleetConfig) -> dict[str, Any]:
    """The held-out synthetic fleet at the fixed operating points (the pre-issue counting:
    an alarm from ``min(onset, failure - horizon)`` to recovery catches an incident)."""
    evaluated = []
    for instance in generate_fleet(fleet):
        labelled = from_synthetic(instance, predictor.horizon_s)
        features = series_features(labelled.times, labelled.values, predictor.feature_config,
                                   max_samples=64, baseline_config=predictor.baseline_config)
        episodes = [Episode(i.failure_at, i.recovered_at, i.mode,
                            i.failure_at - min(i.onset, i.failure_at - predictor.horizon_s))
                    for i in instance.incidents]
        item = EvalSeries(instance.instance_id, labelled.times, episodes,
                          (float(labelled.times[0]), float(labelled.times[-1])))
        scores = model_scores(features, predictor, times=labelled.times)
        item.scores = {"model_default": scores["default"], "model_spec": scores["spec"],
                       "windowed_gaussian": windowed_gaussian(labelled.times, labelled.values)}
        evaluated.append(item)
    report: dict[str, Any] = {"fleet": fleet.to_dict(), "series": len(evaluated),
                              "instance_days": round(sum(s.days for s in evaluated), 2),
                              "detectors": {}}
    for detector, threshold in SYNTHETIC_THRESHOLD.items():
        result = count(evaluated, detector, threshold)
        result["recall"] = round(result["caught"] / max(result["episodes"], 1), 3)
        report["detectors"][detector] = result
    sweep = []
    for threshold in range(10, 72, 2):
        result = count(evaluated, "model_default", float(threshold))
        sweep.append({"threshold": threshold, "false_per_instance_day":
                      result["false_per_instance_day"],
                      "recall": round(result["caught"] / max(result["episodes"], 1), 3)})
    report["model_default_sweep"] = sweep
    matched = [row for row in sweep if row["false_per_instance_day"] <= 0.038]
    report["model_default_at_old_false_rate"] = max(matched, key=lambda r: r["recall"],
                                                    default=None)
    model = report["detectors"]["model_default"]
    report["detectors"]["random_control"] = random_control(evaluated,
                                                           model["false_per_instance_day"])
    return report


def fill_up_holdout(predictor: Predictor, instances: int = 60) -> dict[str, Any]:
    """Disk fill-ups on a held-out fleet (seed never trained on): how many the model
    catches at the operating point, and how right the exhaustion forecast is at that moment
    (forecast hours against the time the disk really had left)."""
    from models.scoring import series_forecasts

    fleet = replace(FleetConfig(), instances=instances, days=4.0, seed=HOLDOUT_SEED + 1,
                    fill_ups_per_day=0.5)
    threshold = SYNTHETIC_THRESHOLD["model_default"]
    caught = total = 0
    errors: list[float] = []
    leads: list[float] = []
    for instance in generate_fleet(fleet):
        labelled = from_synthetic(instance, predictor.horizon_s)
        features = series_features(labelled.times, labelled.values, predictor.feature_config,
                                   max_samples=64, baseline_config=predictor.baseline_config)
        alarms = migrations(labelled.times, model_scores(features, predictor,
                                                         times=labelled.times)["default"],
                            threshold)
        forecast = None
        for incident in (i for i in instance.incidents if i.mode == "disk_fill"):
            total += 1
            inside = alarms[(alarms >= incident.onset) & (alarms <= incident.recovered_at)]
            if inside.size == 0:
                continue
            caught += 1
            first = float(inside[0])
            leads.append((incident.failure_at - first) / 60.0)
            if forecast is None:
                forecast = series_forecasts(labelled.times, labelled.values, max_samples=64)
            row = int(np.searchsorted(labelled.times, first))
            made = forecast[row] if row < len(forecast) else None
            actual_h = (incident.failure_at - first) / 3600.0
            if made is not None and actual_h > 0:
                errors.append((made.hours - actual_h) / actual_h)
    return {"fleet": fleet.to_dict(), "threshold": threshold, "fill_ups": total,
            "caught": caught, "lead_min_before_full": distribution(leads),
            "forecasts_at_first_alarm": len(errors),
            "forecast_relative_error": distribution([100 * e for e in errors]),
            "forecast_within_10_percent": sum(1 for e in errors if abs(e) <= 0.1)}
