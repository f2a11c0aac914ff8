"""The AWS platform: an EC2 primary, its shadow in another zone, ALB and Route 53 routing."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from infra.aws.clients import AwsClients
from infra.aws.discovery import find_node_instance
from infra.aws.fencing import InstanceControl
from infra.aws.preflight import PreflightResult, preflight
from infra.aws.program import checked_weights, shadow_program
from infra.aws.snapshots import snapshot_status, take_snapshot
from infra.aws.spec import AwsShadowSpec
from infra.aws.stack_config import record_weights
from infra.aws.traffic import AlbWeights, DnsWeights, TrafficRouter
from infra.errors import InvalidRequestError
from infra.platform import Health, Platform, ProgressCallback, ReplicationStatus, ShadowInfo
from infra.pulumi_engine import StackDriver

log = logging.getLogger(__name__)


class NodeApplication(Protocol):
    """The application on the instances (e.g. PostgreSQL), which EC2 cannot see into.

    Tiers 1-2 stream at application level; promoting a replica and asking whether a node
    accepts writes are the application's business. Without one, the platform answers from EC2
    state and role tags only.
    """

    def replication_status(self) -> ReplicationStatus:
        """State and lag of the shadow's replication."""

    def promote(self, address: str) -> None:
        """Make the replica at ``address`` writable (idempotent)."""

    def writable(self, address: str) -> bool:
        """Whether the node at ``address`` would accept a write now."""


def _no_program() -> None:
    """``destroy`` never runs the program; the Automation API still wants one."""


class AwsPlatform(Platform):
    """One protected EC2 instance and its shadow."""

    name = "aws"

    def __init__(
        self,
        spec: AwsShadowSpec,
        clients: AwsClients,
        driver: StackDriver | None,
        *,
        application: NodeApplication | None = None,
        instance_control: InstanceControl | None = None,
        dns_sync_timeout_s: float = 180.0,
    ) -> None:
        self.spec = spec
        self.clients = clients
        self.driver = driver
        self.application = application
        self.control = instance_control or InstanceControl(clients.ec2)
        alb = dns = None
        if spec.alb is not None:
            groups = {
                spec.primary_node: spec.alb.primary_target_group_arn,
                spec.shadow_node: spec.alb.shadow_target_group_arn,
            }
            alb = AlbWeights(clients.elbv2, spec.alb, groups)
        if spec.dns is not None:
            dns = DnsWeights(
                clients.route53, spec.dns, spec.nodes, sync_timeout_s=dns_sync_timeout_s
            )
        self.router = TrafficRouter(alb, dns)

    # -- shadow lifecycle ------------------------------------------------------------------

    def preflight(self) -> PreflightResult:
        """Check the spec against AWS; see :func:`infra.aws.preflight.preflight`."""
        return preflight(self.clients, self.spec)

    def provision_shadow(self, on_progress: ProgressCallback | None = None) -> ShadowInfo:
        """Preflight, seed snapshot if one is needed, then ``pulumi up`` the shadow stack."""
        facts = self.preflight()
        volume = facts.primary.data_volume
        if self.spec.uses_snapshot and facts.snapshot_id is None and volume is not None:
            log.info("No snapshot of %s yet. Taking one to seed the shadow.", volume.volume_id)
            facts = replace(
                facts,
                snapshot_id=take_snapshot(self.clients, volume.volume_id, self.spec.instance_id),
            )
        driver = self._driver()
        result = driver.up(
            self.spec.stack_name, shadow_program(self.spec, facts), on_progress=on_progress
        )
        if self.control.role(self.spec.ec2_instance_id) is None:
            self.control.set_role(self.spec.ec2_instance_id, "primary")
        return ShadowInfo(self.spec.instance_id, self.spec.shadow_node, result.outputs)

    def destroy_shadow(self, on_progress: ProgressCallback | None = None) -> bool:
        """Drain the shadow at the ALB, then ``pulumi destroy`` (instance, volume, records)."""
        if self.router.alb is not None:
            self.router.alb.set({self.spec.shadow_node: 0})
        return self._driver().destroy(self.spec.stack_name, _no_program, on_progress=on_progress)

    def replication_status(self) -> ReplicationStatus:
        """The application's view; for tier 3 without one, the age of the newest snapshot."""
        if self.application is not None:
            return self.application.replication_status()
        if self.spec.tier == 3:
            facts = self.preflight().primary
            if facts.data_volume is not None:
                return snapshot_status(self.clients, facts.data_volume.volume_id)
        return ReplicationStatus("unknown", "none", None, None, None, None)

    # -- traffic ---------------------------------------------------------------------------

    def get_weights(self) -> dict[str, int]:
        """Per node, the largest weight the ALB or Route 53 gives it."""
        return self.router.get()

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Set weights absolutely at the ALB and in Route 53, then record them in the stack."""
        checked_weights(self.spec, weights)  # refuse bad input before touching anything
        self.router.set(weights)
        if self.driver is not None:
            record_weights(self.driver, self.spec.stack_name, weights)

    def fence(self, node: str) -> None:
        """Weight 0 at the ALB and in DNS, label it fenced, stop it when EC2 says it runs."""
        ec2_id = self._ec2_id(node)
        self.set_weights({node: 0})
        self.control.set_role(ec2_id, "fenced")
        if self.spec.stop_on_fence and self.control.stop(ec2_id):
            log.info("Fenced %s: drained and stopped %s.", node, ec2_id)

    def unfence(self, node: str) -> None:
        """Start the instance again and restore its role (weights are restored separately)."""
        ec2_id = self._ec2_id(node)
        self.control.start(ec2_id)
        self.control.set_role(ec2_id, self._default_role(node))

    def promote(self, node: str) -> None:
        """Make ``node`` the writable primary (the application's promotion, then the label)."""
        ec2_id = self._ec2_id(node)
        if self.control.role(ec2_id) == "fenced":
            raise InvalidRequestError(f"{node} is fenced; a fenced node cannot be promoted")
        if self.application is not None:
            self.application.promote(self._address(ec2_id))
        self.control.set_role(ec2_id, "primary")

    def probe(self, node: str) -> Health:
        """Reachable: EC2 says running. Writable: labelled primary (and the application agrees)."""
        ec2_id = self._find_ec2_id(node)
        if ec2_id is None:
            return Health(False, False, f"no EC2 instance serves {node}")
        state = self.control.state(ec2_id)
        if state != "running":
            return Health(False, False, f"{ec2_id} is {state}")
        role = self.control.role(ec2_id) or self._default_role(node)
        writable = role == "primary"
        if writable and self.application is not None:
            writable = self.application.writable(self._address(ec2_id))
        return Health(True, writable, "" if writable else f"{ec2_id} is {role}")

    # -- cutover support -------------------------------------------------------------------

    def fence_router(self, node: str) -> None:
        """Weight 0 for ``node`` at the ALB and in Route 53; needs nothing from the node."""
        self.set_weights({node: 0})

    def close_router_sessions(self, node: str) -> None:
        """Nothing to do: an ALB has no API to cut open connections to a target.

        New requests stop at weight 0; keep-alive connections end when the node stops
        (:meth:`stop_node`) or at the load balancer's idle timeout.
        """
        log.info("ALB sessions to %s end with the node or at the idle timeout.", node)

    def stop_node(self, node: str) -> str | None:
        """Stop ``node``'s instance if EC2 says it runs; the token is its instance id."""
        ec2_id = self._ec2_id(node)
        return ec2_id if self.control.stop(ec2_id) else None

    def start_node(self, node: str, token: str) -> None:
        """Start the instance :meth:`stop_node` stopped (compensation); idempotent."""
        if token != self._ec2_id(node):
            raise InvalidRequestError(f"token {token!r} is not {node}'s instance")
        self.control.start(token)

    # -- helpers ---------------------------------------------------------------------------

    def _ec2_id(self, node: str) -> str:
        ec2_id = self._find_ec2_id(node)
        if ec2_id is None:
            raise InvalidRequestError(f"{node} has no EC2 instance; provision the shadow first")
        return ec2_id

    def _find_ec2_id(self, node: str) -> str | None:
        if node == self.spec.primary_node:
            return self.spec.ec2_instance_id
        if node != self.spec.shadow_node:
            raise InvalidRequestError(f"unknown node {node!r}; nodes are {self.spec.nodes}")
        # The shadow's id lives in the stack's outputs too, but a tag lookup needs no Pulumi
        # CLI and still finds a shadow whose stack state was lost.
        instance = find_node_instance(self.clients, node)
        return str(instance["InstanceId"]) if instance is not None else None

    def _default_role(self, node: str) -> str:
        return "primary" if node == self.spec.primary_node else "shadow"

    def _address(self, ec2_id: str) -> str:
        reservations = self.clients.ec2.describe_instances(InstanceIds=[ec2_id])
        return str(reservations["Reservations"][0]["Instances"][0]["PrivateIpAddress"])

    def _driver(self) -> StackDriver:
        if self.driver is None:
            raise InvalidRequestError(
                "this AwsPlatform has no Pulumi driver; it cannot change stacks"
            )
        return self.driver
