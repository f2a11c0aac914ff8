"""Activities of the walking skeleton: one Pulumi stack and one LightGBM model.

They are the smallest real use of each component the product is built on, so the demo and
the tests can prove the toolchain works on this machine before anything else runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from temporalio import activity

from activities.errors import translated_errors
from activities.heartbeat import heartbeat_callback
from infra.pulumi_engine import StackDriver
from infra.smoke import smoke_program


@dataclass
class SmokeStackInput:
    """Which stack to manage and the file it should own."""

    stack_name: str
    """Pulumi stack name."""
    path: str
    """Absolute path of the managed file."""
    content: str
    """What the file should contain."""


@dataclass
class SmokeStackResult:
    """What the stack reports after ``up``."""

    path: str
    """The managed file."""
    sha256: str
    """Digest the provider computed from the content it wrote."""
    changes: dict[str, int]
    """Pulumi's resource-change summary."""


@dataclass
class SmokeModelInput:
    """A toy classification task for LightGBM."""

    rows: int = 2000
    """Training rows."""
    seed: int = 7
    """Random seed, so the result is reproducible."""
    probe: tuple[float, float] = (3.0, 3.0)
    """The point whose probability is returned."""


class SmokeActivities:
    """Activities that use Pulumi and LightGBM once each."""

    def __init__(self, driver: StackDriver) -> None:
        self._driver = driver

    @activity.defn
    def apply_smoke_stack(self, request: SmokeStackInput) -> SmokeStackResult:
        """``pulumi up`` the smoke stack, heartbeating with Pulumi's output."""
        with translated_errors():
            result = self._driver.up(
                request.stack_name,
                smoke_program(request.path, request.content),
                on_progress=heartbeat_callback(),
            )
        return SmokeStackResult(
            path=result.outputs["path"], sha256=result.outputs["sha256"], changes=result.summary
        )

    @activity.defn
    def destroy_smoke_stack(self, request: SmokeStackInput) -> bool:
        """``pulumi destroy`` the smoke stack; returns whether there was anything to destroy."""
        with translated_errors():
            return self._driver.destroy(
                request.stack_name,
                smoke_program(request.path, request.content),
                on_progress=heartbeat_callback(),
            )

    @activity.defn
    def score_smoke_model(self, request: SmokeModelInput) -> float:
        """Train a small LightGBM classifier and return its probability for ``probe``."""
        rng = np.random.default_rng(request.seed)
        features = rng.normal(size=(request.rows, 2))
        labels = features.sum(axis=1) + rng.normal(scale=0.5, size=request.rows) > 1.0
        model = lgb.LGBMClassifier(n_estimators=50, num_leaves=8, verbose=-1, random_state=0)
        model.fit(features, labels.astype(int))
        probabilities = np.asarray(model.predict_proba(np.array([request.probe])))
        probability = probabilities[0, 1]
        return float(probability)
