"""The ASD application-server data in ``../shared/data/asd`` (outside the repository).

Eight real servers, 19 unnamed metrics each (min-max scaled by the data's owner) at 5-minute
steps: 30 unlabelled days of normal operation, then 15 days labelled by operators from
incident reports. The data is read in place, never copied into the repository; see the
folder's README for its source and licence.

Each file becomes an :class:`AsdServer` whose columns are keyed ``other:m01`` … ``other:m19``
(the metrics have no names, so every column is of kind ``other``) and whose incidents carry
their first and last labelled row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.metrics import FloatArray
from models.nab import epoch_seconds

ASD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "asd"
"""Where the data lives: ``../shared/data/asd`` relative to the repository root."""

STEP_S = 300.0
"""Sampling step of every file."""


class AsdDataError(FileNotFoundError):
    """The ASD folder is missing or incomplete."""


@dataclass(frozen=True)
class AsdIncident:
    """One labelled incident."""

    start: float
    """Epoch seconds of its first labelled row (the onset)."""
    end: float
    """Epoch seconds of its last labelled row."""
    start_row: int
    """Row of the whole file (train part included) where it starts."""
    end_row: int
    """Row where it ends (inclusive)."""
    kind: str
    """``metric``, ``temporal`` or ``metric-temporal`` (the operators' classification)."""


@dataclass
class AsdServer:
    """One server's file."""

    name: str
    """File stem, e.g. ``omi-1``."""
    path: Path
    """The CSV file."""
    times: FloatArray
    """Epoch seconds (synthetic 5-minute steps, as in the file)."""
    values: dict[str, FloatArray]
    """Column key (``other:m01`` …) → values."""
    labelled_from: float
    """Epoch seconds of the first row of the labelled (test) part."""
    incidents: list[AsdIncident]
    """Incidents in time order."""

    @property
    def labelled(self) -> npt.NDArray[np.bool_]:
        """Rows of the labelled part."""
        return self.times >= self.labelled_from

    def training_labels(self, horizon_s: float, lead_s: float | None = None) -> np.ndarray:
        """True where an incident starts within ``lead_s`` (default: the horizon) or is under
        way: "fails or degrades within the horizon", as for every other source."""
        lead = horizon_s if lead_s is None else lead_s
        label = np.zeros(self.times.shape, dtype=bool)
        for incident in self.incidents:
            label |= (self.times >= incident.start - lead) & (self.times <= incident.end)
        return label


def asd_available(root: Path = ASD_DIR) -> bool:
    """Whether the ASD data is where we expect it."""
    return root.is_dir() and any(root.glob("omi-*.csv"))


def asd_files(root: Path = ASD_DIR) -> list[Path]:
    """Every server file, in numeric order (omi-1, omi-2, …, omi-11)."""
    if not asd_available(root):
        raise AsdDataError(f"ASD data not found in {root} (expected omi-*.csv)")
    return sorted(root.glob("omi-*.csv"), key=lambda p: int(p.stem.split("-")[-1]))


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns of a server file (``m01`` … ``m19``)."""
    return [c for c in frame.columns if c.startswith("m") and c[1:].isdigit()]


def load_server(path: Path) -> AsdServer:
    """Read one server file and its ``.segments.json``."""
    frame = pd.read_csv(path)
    times = epoch_seconds(frame["timestamp"])
    labelled = np.flatnonzero((frame["split"] == "test").to_numpy())
    first = int(labelled[0]) if labelled.size else len(frame)
    segments = json.loads(path.with_suffix(".segments.json").read_text())
    incidents = [
        AsdIncident(float(times[first + s["start_index"]]), float(times[first + s["end_index"]]),
                    first + int(s["start_index"]), first + int(s["end_index"]), str(s["type"]))
        for s in segments
    ]
    values = {f"other:{c}": frame[c].to_numpy(dtype=np.float64) for c in metric_columns(frame)}
    labelled_from = float(times[first]) if first < len(times) else float("inf")
    return AsdServer(path.stem, path, times, values, labelled_from,
                     sorted(incidents, key=lambda i: i.start))


def load_asd(root: Path = ASD_DIR) -> list[AsdServer]:
    """Every server of the shared data."""
    return [load_server(path) for path in asd_files(root)]


def asd_digest(root: Path = ASD_DIR) -> dict[str, str]:
    """SHA-256 of every server file and its segments, for model metadata."""
    paths = [p for f in asd_files(root) for p in (f, f.with_suffix(".segments.json"))]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
