"""The NAB AWS CloudWatch series in ``../shared/data/nab`` (outside the repository).

The data is read in place, never copied into the repository. Each file becomes a
:class:`NabSeries` with the canonical metric it measures, its labelled anomaly times and its
NAB anomaly windows (``labels.json``, ``windows.json``). The labels mark unusual behaviour,
not confirmed failures; see the folder's README.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.metrics import FloatArray

NAB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nab"
"""Where the data lives: ``../shared/data/nab`` relative to the repository root."""

SERIES_FOLDER = "realAWSCloudwatch"
"""Subfolder with the CSV files."""

_METRIC_BY_PREFIX = (
    ("ec2_cpu_utilization", "cpu_percent"),
    ("rds_cpu_utilization", "cpu_percent"),
    ("ec2_network_in", "network_bytes"),
    ("iio_", "network_bytes"),
    # Disk *write bytes* is not disk latency; an ASG metric has no known scale.
    ("ec2_disk_write_bytes", "other"),
    ("grok_asg", "other"),
)


class NabDataError(FileNotFoundError):
    """The NAB folder is missing or incomplete."""


@dataclass
class NabSeries:
    """One NAB file."""

    name: str
    """Key in ``labels.json``, e.g. ``realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv``."""
    path: Path
    """The CSV file."""
    metric: str
    """Canonical metric it measures (``other`` when the scale is unknown)."""
    times: FloatArray
    """Epoch seconds."""
    values: FloatArray
    """Raw values."""
    labels: list[float]
    """Labelled anomaly times, epoch seconds."""
    windows: list[tuple[float, float]]
    """NAB anomaly windows ``(start, end)``, epoch seconds."""

    def training_labels(self, horizon_s: float, after_s: float = 1800.0) -> np.ndarray:
        """True within ``horizon_s`` before a labelled anomaly (and ``after_s`` after it)."""
        label = np.zeros(self.times.shape, dtype=bool)
        for at in self.labels:
            label |= (self.times >= at - horizon_s) & (self.times <= at + after_s)
        return label


def metric_for_file(file_name: str) -> str:
    """Canonical metric of a NAB file, from its name."""
    for prefix, metric in _METRIC_BY_PREFIX:
        if file_name.startswith(prefix):
            return metric
    return "other"


def nab_available(root: Path = NAB_DIR) -> bool:
    """Whether the NAB data is where we expect it."""
    return (root / "labels.json").is_file() and (root / SERIES_FOLDER).is_dir()


def epoch_seconds(stamps: pd.Series) -> FloatArray:
    """ISO 8601 timestamps (UTC unless they say otherwise) → epoch seconds."""
    parsed = pd.to_datetime(stamps, format="ISO8601", utc=True)
    # Subtracting the epoch works whatever resolution pandas picked for the column.
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.to_numpy(dtype=np.float64)


def _epoch(stamps: list[str]) -> list[float]:
    return [float(x) for x in epoch_seconds(pd.Series(stamps, dtype=str))]


def nab_files(root: Path = NAB_DIR) -> list[Path]:
    """Every NAB CSV file, sorted by name."""
    if not nab_available(root):
        raise NabDataError(f"NAB data not found in {root} (expected labels.json and "
                           f"{SERIES_FOLDER}/)")
    return sorted((root / SERIES_FOLDER).glob("*.csv"))


def load_nab(root: Path = NAB_DIR) -> list[NabSeries]:
    """Load every NAB series with its labels and windows."""
    files = nab_files(root)
    labels = json.loads((root / "labels.json").read_text())
    windows = json.loads((root / "windows.json").read_text())
    series = []
    for path in files:
        name = f"{SERIES_FOLDER}/{path.name}"
        frame = pd.read_csv(path)
        series.append(NabSeries(
            name=name,
            path=path,
            metric=metric_for_file(path.name),
            times=epoch_seconds(frame["timestamp"]),
            values=frame["value"].to_numpy(dtype=np.float64),
            labels=_epoch(labels.get(name, [])),
            windows=[(a, b) for a, b in zip(
                _epoch([w[0] for w in windows.get(name, [])]),
                _epoch([w[1] for w in windows.get(name, [])]), strict=True)],
        ))
    return series


def nab_digest(root: Path = NAB_DIR) -> dict[str, str]:
    """SHA-256 of every NAB file (and the label files), for model metadata."""
    paths = [*nab_files(root), root / "labels.json", root / "windows.json"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
