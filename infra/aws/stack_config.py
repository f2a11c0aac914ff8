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
DNS_CHANGE_KEY = "shadowshift:dnsChange"
"""The Route 53 change that wrote the recorded weights: a later step (the cutover's verify)
waits for it to be INSYNC, off the critical path."""


def record_weights(
    driver: StackDriver,
    stack_name: str,
    weights: Mapping[str, int],
    dns_change_id: str | None = None,
) -> bool:
    """Store ``weights`` (merged over what the stack has) as the stack's weights, and the
    Route 53 change that wrote them when given.

    Returns ``False`` when the stack does not exist (nothing to keep in step). Setting the same
    weights twice is a no-op, so retries are safe.
    """
    if not driver.exists(stack_name):
        return False
    merged = {**(recorded_weights(driver, stack_name) or {}), **weights}
    # Errors arrive already translated (StackBusyError, InfraError): both are retryable.
    values = {CONFIG_KEY: json.dumps(dict(sorted(merged.items())))}
    if dns_change_id:
        values[DNS_CHANGE_KEY] = dns_change_id
    driver.set_config(stack_name, values)
    return True


def recorded_dns_change(driver: StackDriver, stack_name: str) -> str | None:
    """The Route 53 change id stored with the weights, ``None`` when none was."""
    return driver.get_config(stack_name, DNS_CHANGE_KEY)


def recorded_weights(driver: StackDriver, stack_name: str) -> dict[str, int] | None:
    """The weights the stack's config holds, ``None`` when unset or no stack exists."""
    raw = driver.get_config(stack_name, CONFIG_KEY)
    if raw is None:
        return None
    return {str(k): int(v) for k, v in json.loads(raw).items()}
