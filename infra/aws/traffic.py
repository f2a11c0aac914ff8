"""The fast path for weights: ALB listener forward weights and Route 53 weighted records.

Weights are absolute integers 0..100 per node. ALB accepts 0..999 per target group and Route 53
0..255 per record, so 0..100 is written as is: no scaling, no rounding, and what we read back is
what we wrote. A weight of 0 everywhere means different things: Route 53 then answers *every*
record with equal probability, while an ALB forward with only zero weights has no target to
send to. Fencing therefore never relies on DNS alone (see :mod:`infra.aws.fencing`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from infra.aws.errors import aws_errors
from infra.aws.spec import AlbRoutingSpec, DnsRoutingSpec
from infra.errors import InfraError, InvalidRequestError

log = logging.getLogger(__name__)


class AlbWeights:
    """Forward weights of one listener's default action, one target group per node."""

    def __init__(self, elbv2: Any, alb: AlbRoutingSpec, groups: Mapping[str, str]) -> None:
        """``groups`` maps node name → target group ARN."""
        self._elbv2 = elbv2
        self._alb = alb
        self._groups = dict(groups)

    def get(self) -> dict[str, int]:
        """Weight per node (a target group missing from the forward action counts as 0)."""
        forward = self._forward_action(self._default_actions())
        by_group = _forward_weights(forward)
        return {node: min(by_group.get(arn, 0), 100) for node, arn in self._groups.items()}

    def set(self, weights: Mapping[str, int]) -> None:
        """Make the default action forward with ``weights``; other nodes keep theirs."""
        actions = self._default_actions()
        forward = self._forward_action(actions)
        current = _forward_weights(forward)
        for node, weight in weights.items():
            current[self._groups[node]] = int(weight)
        forward.pop("TargetGroupArn", None)  # exclusive with a multi-group ForwardConfig
        config = forward.setdefault("ForwardConfig", {})
        config["TargetGroups"] = [{"TargetGroupArn": a, "Weight": w} for a, w in current.items()]
        with aws_errors("elbv2", f"alb.listener_arn {self._alb.listener_arn!r}"):
            self._elbv2.modify_listener(ListenerArn=self._alb.listener_arn, DefaultActions=actions)
        log.info("ALB listener now forwards with weights %s.", dict(weights))

    def _default_actions(self) -> list[dict[str, Any]]:
        with aws_errors("elbv2", f"alb.listener_arn {self._alb.listener_arn!r}"):
            listeners = self._elbv2.describe_listeners(ListenerArns=[self._alb.listener_arn])
        actions: list[dict[str, Any]] = copy.deepcopy(listeners["Listeners"][0]["DefaultActions"])
        return actions

    def _forward_action(self, actions: list[dict[str, Any]]) -> dict[str, Any]:
        for action in actions:
            if action["Type"] == "forward":
                return action
        raise InvalidRequestError(
            f"alb.listener_arn {self._alb.listener_arn}: the default action does not forward "
            "to target groups, so there are no weights to set"
        )


def _forward_weights(forward: Mapping[str, Any]) -> dict[str, int]:
    """Target group ARN → weight; a plain single-group forward is that group at 100."""
    groups = forward.get("ForwardConfig", {}).get("TargetGroups")
    if groups:
        return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
    return {forward["TargetGroupArn"]: 100} if forward.get("TargetGroupArn") else {}


class DnsWeights:
    """Weights of the Route 53 weighted A records of one name, set identifier = node."""

    def __init__(
        self,
        route53: Any,
        dns: DnsRoutingSpec,
        nodes: tuple[str, ...],
        *,
        sync_timeout_s: float = 180.0,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._route53 = route53
        self._dns = dns
        self._nodes = nodes
        self._sync_timeout_s = sync_timeout_s
        self._poll_interval_s = poll_interval_s

    def get(self) -> dict[str, int]:
        """Weight per node that has a record (nodes without one are left out)."""
        return {node: int(r.get("Weight", 0)) for node, r in self.records().items()}

    def set(
        self,
        weights: Mapping[str, int],
        *,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> str:
        """UPSERT the weights in one atomic change batch; return the change id.

        With ``wait`` it then polls until Route 53 says INSYNC (see :meth:`wait_insync`);
        without, it returns as soon as Route 53 accepted the batch, which is what a cutover's
        critical path wants: an accepted change is applied, only its propagation takes time.
        """
        records = self.records()
        missing = sorted(set(weights) - set(records))
        if missing:
            raise InvalidRequestError(
                f"no weighted record for {', '.join(missing)} under {self._dns.record_name}; "
                "provision the shadow first"
            )
        changes = []
        for node, weight in weights.items():
            record = dict(records[node], Weight=int(weight))
            changes.append({"Action": "UPSERT", "ResourceRecordSet": record})
        with aws_errors("route53", f"dns.hosted_zone_id {self._dns.hosted_zone_id!r}"):
            change = self._route53.change_resource_record_sets(
                HostedZoneId=self._dns.zone_id,
                ChangeBatch={"Comment": "shadowshift weights", "Changes": changes},
            )["ChangeInfo"]
        log.info("Route 53 accepted weights %s for %s (change %s, %s).", dict(weights),
                 self._dns.record_name, change["Id"], change["Status"])
        if wait:
            self.wait_insync(change["Id"], on_wait, status=change["Status"])
        return str(change["Id"])

    def records(self) -> dict[str, dict[str, Any]]:
        """The weighted A record of each node that has one, as Route 53 lists it."""
        name = self._dns.record_name.rstrip(".").lower() + "."
        found: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"StartRecordName": name, "StartRecordType": "A"}
        with aws_errors("route53", f"dns.hosted_zone_id {self._dns.hosted_zone_id!r}"):
            while True:
                page = self._route53.list_resource_record_sets(
                    HostedZoneId=self._dns.zone_id, **kwargs
                )
                for record in page["ResourceRecordSets"]:
                    if record["Name"].lower() != name or record["Type"] != "A":
                        return found
                    if record.get("SetIdentifier") in self._nodes:
                        found[record["SetIdentifier"]] = record
                if not page.get("IsTruncated"):
                    return found
                kwargs = {
                    "StartRecordName": page["NextRecordName"],
                    "StartRecordType": page["NextRecordType"],
                    "StartRecordIdentifier": page.get("NextRecordIdentifier", ""),
                }

    def wait_insync(
        self,
        change_id: str,
        on_wait: Callable[[str], None] | None = None,
        *,
        status: str | None = None,
    ) -> None:
        """Poll ``GetChange`` until INSYNC, calling ``on_wait`` after every answer.

        Route 53 usually takes tens of seconds; callers inside an activity pass a heartbeat as
        ``on_wait`` so a short heartbeat timeout keeps working. INSYNC means every Route 53
        authoritative server answers with the new weights; it says nothing about resolvers
        that cached the old answer (up to the TTL, or longer).

        Raises:
            InfraError: still not INSYNC after ``sync_timeout_s`` (retryable).
        """
        deadline = time.monotonic() + self._sync_timeout_s
        while True:
            if status is None:
                with aws_errors("route53", f"Route 53 change {change_id}"):
                    status = self._route53.get_change(Id=change_id)["ChangeInfo"]["Status"]
            if on_wait is not None:
                on_wait(f"route53 change {change_id} {status}")
            if status == "INSYNC":
                return
            if time.monotonic() > deadline:
                raise InfraError(
                    f"Route 53 change {change_id} still {status} after {self._sync_timeout_s}s"
                )
            time.sleep(self._poll_interval_s)
            status = None


class TrafficRouter:
    """Both routers of a service, driven together; either may be absent."""

    def __init__(self, alb: AlbWeights | None, dns: DnsWeights | None) -> None:
        self.alb = alb
        self.dns = dns

    def get(self) -> dict[str, int]:
        """Per node, the *largest* weight any router gives it.

        The routers only disagree after a half-done shift; reporting the larger weight means a
        node still receiving traffic anywhere is never reported as drained.
        """
        merged: dict[str, int] = {}
        for router in (self.alb, self.dns):
            if router is not None:
                for node, weight in router.get().items():
                    merged[node] = max(weight, merged.get(node, 0))
        return merged

    def set(
        self,
        weights: Mapping[str, int],
        *,
        wait_dns: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> str | None:
        """ALB first (takes effect at once), then DNS; undo the ALB change if DNS fails.

        Returns the Route 53 change id (``None`` without DNS). ``wait_dns=False`` returns once
        Route 53 accepted the change, without waiting for INSYNC (the cutover's critical path).
        """
        before = self.alb.get() if self.alb is not None else None
        if self.alb is not None:
            self.alb.set(weights)
        if self.dns is None:
            return None
        try:
            return self.dns.set(weights, wait=wait_dns, on_wait=on_wait)
        except Exception:
            if self.alb is not None and before is not None:
                log.warning("Route 53 refused the weights. Restoring the ALB's %s.", before)
                self.alb.set({node: before[node] for node in weights if node in before})
            raise
