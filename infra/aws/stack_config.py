"""Write fast-path weights into the shadow stack's configuration.

The Route 53 records belong to the stack and take their weights from the
``shadowshift:weights`` config. After the fast path moved traffic with the API, the config
must say the same, or the next ``pulumi up`` (a tier change, a re-provision) would put the old
weights back and silently undo a cutover.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from infra.aws.program import WEIGHTS_CONFIG_KEY
from infra.pulumi_engine import StackDriver

CONFIG_KEY = f"shadowshift:{WEIGHTS_CONFIG_KEY}"
"""Fully qualified config key of the weights."""


def record_weights(driver: StackDriver, stack_name: str, weights: Mapping[str, int]) -> bool:
    """Store ``weights`` (merged over what the stack has) as the stack's weights.

    Returns ``False`` when the stack does not exist (nothing to keep in step). Setting the same
    weights twice is a no-op, so retries are safe.
    """
    if not driver.exists(stack_name):
        return False
    merged = {**(recorded_weights(driver, stack_name) or {}), **weights}
    # Errors arrive already translated (StackBusyError, InfraError): both are retryable.
    driver.set_config(stack_name, {CONFIG_KEY: json.dumps(dict(sorted(merged.items())))})
    return True


def recorded_weights(driver: StackDriver, stack_name: str) -> dict[str, int] | None:
    """The weights the stack's config holds, ``None`` when unset or no stack exists."""
    raw = driver.get_config(stack_name, CONFIG_KEY)
    if raw is None:
        return None
    return {str(k): int(v) for k, v in json.loads(raw).items()}
