"""Fast-path weights reconciled into a real stack's config (real Pulumi engine, file backend)."""

from __future__ import annotations

import json

import pulumi

from infra.aws.stack_config import CONFIG_KEY, record_weights, recorded_weights
from infra.pulumi_engine import StackDriver


def _weights_program() -> None:
    """Stands in for the shadow program: it exports the weights it would write."""
    raw = pulumi.Config("shadowshift").get("weights")
    pulumi.export("weights", json.loads(raw) if raw else {"orders-db": 100})


def test_a_later_up_keeps_the_cutover_weights(stack_driver: StackDriver) -> None:
    """After record_weights, the next up sees the new weights instead of reverting them."""
    assert record_weights(stack_driver, "aws-shadow-none", {"orders-db": 0}) is False
    stack = "aws-shadow-orders-db"
    first = stack_driver.up(stack, _weights_program)
    assert first.outputs["weights"] == {"orders-db": 100}

    assert record_weights(stack_driver, stack, {"orders-db": 0, "orders-db-shadow": 100})
    assert record_weights(stack_driver, stack, {"orders-db-shadow": 100})  # retry-safe merge
    assert recorded_weights(stack_driver, stack) == {"orders-db": 0, "orders-db-shadow": 100}

    again = stack_driver.up(stack, _weights_program)
    assert again.outputs["weights"] == {"orders-db": 0, "orders-db-shadow": 100}
    assert CONFIG_KEY == "shadowshift:weights"
    stack_driver.destroy(stack, _weights_program)
