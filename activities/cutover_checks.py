"""Preflight of a cutover: decide source and target, or refuse with the reason.

Nothing here changes the world; a refusal raises ``InvalidRequestError`` (not retried), so a
bad request leaves every server and weight as it was.
"""

from __future__ import annotations

from contracts.cutover import MODES, CutoverPlan, PreflightRequest
from contracts.shadow import TIER_LAG_BOUND_BYTES
from infra.errors import InvalidRequestError
from infra.platform import Platform


def plan_cutover(
    platform: Platform, request: PreflightRequest, lock_holder: str | None
) -> CutoverPlan:
    """Check the instance, the router, both nodes and replication; return the plan.

    Raises:
        InvalidRequestError: unknown instance, no healthy shadow, another cutover running,
            no single serving primary (planned), or an unknown mode.
    """
    instance_id = request.instance.instance_id
    if request.mode not in MODES:
        raise InvalidRequestError(f"mode {request.mode!r} is not one of {MODES}")
    if not platform.routes_service():
        raise InvalidRequestError(f"unknown instance {instance_id}: no router service")
    if lock_holder and lock_holder != request.workflow_id:
        raise InvalidRequestError(
            f"cutover {lock_holder} of {instance_id} is in progress; wait for it "
            "(remove the lock file only if that workflow no longer exists)"
        )
    weights = platform.get_weights()
    nodes = list(platform.nodes())
    missing = [node for node in nodes if node not in weights]
    if missing:
        raise InvalidRequestError(
            f"{instance_id} has no healthy shadow: {', '.join(missing)} not behind the router"
        )
    serving = [node for node in nodes if weights[node] > 0]
    if request.mode == "planned":
        return _plan_planned(platform, request, weights, serving)
    return _plan_emergency(platform, request, weights, serving)


def _plan_planned(
    platform: Platform,
    request: PreflightRequest,
    weights: dict[str, int],
    serving: list[str],
) -> CutoverPlan:
    if len(serving) != 1:
        raise InvalidRequestError(
            f"a planned cutover needs exactly one serving node; the router has {weights}"
        )
    source = serving[0]
    target = platform.other_node(source)
    source_health = platform.probe(source)
    if not source_health.writable:
        raise InvalidRequestError(
            f"{source} is not a writable primary ({source_health.detail}); "
            "use an emergency cutover if it failed"
        )
    _require_standby(platform, target)
    status = platform.replication_between(source, target)
    if status.state != "streaming":
        raise InvalidRequestError(
            f"no healthy shadow: {target} is {status.state}, not streaming from {source}"
        )
    tier = request.instance.spec.tier
    if tier == 1 and status.sync_state != "sync":
        raise InvalidRequestError(
            f"no healthy shadow: tier 1 needs {target} synchronous, it is {status.sync_state}"
        )
    bound = TIER_LAG_BOUND_BYTES[tier]
    if status.lag_bytes is None or status.lag_bytes > bound:
        raise InvalidRequestError(
            f"no healthy shadow: {target} lags {status.lag_bytes} bytes (tier {tier} bound "
            f"{bound})"
        )
    return CutoverPlan(
        request.instance, request.mode, request.workflow_id, source, target, dict(weights),
        source_reachable=True, lag_bytes=status.lag_bytes, possible_loss_bytes=0,
        loss_bound="0: the source is fenced and the shadow replays its final position first",
    )


def _plan_emergency(
    platform: Platform,
    request: PreflightRequest,
    weights: dict[str, int],
    serving: list[str],
) -> CutoverPlan:
    nodes = list(platform.nodes())
    if len(serving) == 1:
        source = serving[0]
    else:  # nothing serves: the source is whichever node is not the standby
        standbys = [n for n in nodes if platform.probe(n).in_recovery]
        if len(standbys) != 1:
            raise InvalidRequestError(
                f"cannot tell the failed primary of {request.instance.instance_id}: "
                f"router {weights}"
            )
        source = next(n for n in nodes if n not in standbys)
    target = next(n for n in nodes if n != source)
    _require_standby(platform, target)
    reachable = platform.probe(source).reachable
    lag = platform.replication_between(source, target).lag_bytes if reachable else None
    tier = request.instance.spec.tier
    if tier == 1:
        loss: int | None = 0
        bound = "0: tier 1 commits wait for the shadow's flush (unless sync was relaxed)"
    elif tier == 2:
        loss = lag
        bound = (
            f"the asynchronous lag at the failure: {lag} bytes now, at most "
            f"{TIER_LAG_BOUND_BYTES[2]} while the shadow counted as healthy"
        )
    else:
        loss = None
        bound = (f"WAL not yet shipped: up to {request.instance.spec.archive_interval_s}s "
                 "of writes")
    return CutoverPlan(
        request.instance, request.mode, request.workflow_id, source, target, dict(weights),
        source_reachable=reachable, lag_bytes=lag, possible_loss_bytes=loss, loss_bound=bound,
    )


def _require_standby(platform: Platform, target: str) -> None:
    health = platform.probe(target)
    if not health.reachable:
        raise InvalidRequestError(f"no healthy shadow: {target} is unreachable ({health.detail})")
    if not health.in_recovery:
        raise InvalidRequestError(f"no healthy shadow: {target} is not a standby")
