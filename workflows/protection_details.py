"""What the Temporal Web UI says about a protection: its summary at start and its current
details, kept up to date by the workflow (``workflow.set_current_details``: free, no history
event), so an operator sees what it is doing instead of its raw state.

Pure formatting of the workflow's state; deterministic.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.protection import ProtectionState, standby_node
from contracts.spec import ProtectionSpec


def static_summary(spec: ProtectionSpec) -> str:
    """One line for the workflow list: instance, platform, tier."""
    return f"Protect {spec.instance_id} ({spec.platform}, tier {spec.tier})"


def static_details(spec: ProtectionSpec) -> str:
    """Markdown of what is protected and by which policy."""
    policy = spec.policy
    ports = (f"; ports {spec.primary_port} (primary), {spec.shadow_port} (shadow), "
             f"{spec.router_port} (router)" if spec.router_port else "")
    return (f"**{spec.instance_id}** on `{spec.platform}`, tier {spec.tier}{ports}.\n\n"
            f"Policy: threshold {policy.threshold:g}, {policy.consecutive_readings} readings, "
            f"cooldown {policy.cooldown_s:g} s, failover after {policy.failover_after_s:g} s"
            f"{', advisory' if policy.advisory else ''}, profile `{policy.profile}`.")


def current_details(state: ProtectionState) -> str:
    """Markdown: phase, serving node and shadow, lag, latest score and its reason, last
    cutover and what triggered it, and the last decision."""
    spec = state.spec
    serving = state.serving_node or spec.instance_id
    shadow = standby_node(spec.instance_id, serving)
    lines = [f"**Phase:** {state.phase}" + (" (paused)" if state.paused else ""),
             f"**Serving:** {serving} · **shadow:** {shadow}"
             + ("" if state.shadow_healthy else " (not in sync)")]
    if state.replication is not None and state.replication.lag_bytes is not None:
        lines.append(f"**Lag:** {state.replication.lag_bytes} bytes"
                     + (" · synchronous replication relaxed" if state.sync_degraded else ""))
    risk = state.latest_risk
    if risk is not None:
        lines.append(f"**Readiness score:** {risk.readiness_score:.0f} (failure probability "
                     f"{risk.failure_probability:.2f}, {risk.decision})"
                     + (f": {risk.reason}" if risk.reason else ""))
    last = state.last_cutover
    if last is not None:
        when = datetime.fromtimestamp(last.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"**Last cutover:** {last.outcome}, triggered by {last.trigger} at {when}: "
                     f"{last.reason}" + (f" ({last.former_primary} → {last.primary})"
                                        if last.primary and last.primary != last.former_primary
                                        else ""))
    if state.log:
        lines.append(f"**Last decision:** {state.log[-1]}")
    return "\n\n".join(lines)
