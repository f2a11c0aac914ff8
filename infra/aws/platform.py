"""The AWS platform: an EC2 primary, its shadow in another zone, ALB and Route 53 routing."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from infra.aws.application import NodeApplication
from infra.aws.clients import AwsClients
from infra.aws.fencing import InstanceControl
from infra.aws.nodes import NodeDirectory
from infra.aws.preflight import PreflightResult, preflight
from infra.aws.program import checked_weights, shadow_program
from infra.aws.routing_check import serving_node
from infra.aws.snapshots import snapshot_status, take_snapshot
from infra.aws.spec import AwsShadowSpec
from infra.aws.stack_config import record_weights, recorded_dns_change
from infra.aws.traffic import AlbWeights, DnsWeights, TrafficRouter
from infra.errors import InfraError, InvalidRequestError
from infra.platform import (
    Capabilities,
    Health,
    NodeFacts,
    Platform,
    ProgressCallback,
    ReplicationStatus,
    ShadowInfo,
)
from infra.pulumi_engine import StackDriver

log = logging.getLogger(__name__)


def _no_program() -> None:
    """``destroy`` never runs the program; the Automation API still wants one."""


class AwsPlatform(Platform):
    """One protected EC2 instance and its shadow."""

    name = "aws"
    capabilities = Capabilities(rejoin=False, unprotect_when_degraded=False, sync_relax=False)

    def __init__(
        self,
        spec: AwsShadowSpec,
        clients: AwsClients,
        driver: StackDriver | None,
        *,
        application: NodeApplication | None = None,
        instance_control: InstanceControl | None = None,
        dns_sync_timeout_s: float = 180.0,
        on_wait: ProgressCallback | None = None,
    ) -> None:
        """``on_wait`` is called while a slow AWS wait polls (Route 53 INSYNC); the activity
        that builds the platform passes its heartbeat."""
        self.spec = spec
        self.on_wait = on_wait
        self._dns_change: str | None = None
        self.clients = clients
        self.driver = driver
        self.application = application
        self.control = instance_control or InstanceControl(clients.ec2)
        self.directory = NodeDirectory(spec, clients)
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
        """The application's view from the current primary; tier 3: the newest snapshot."""
        if self.application is not None:
            source = self._current_primary()
            return self.replication_between(source, self._other(source))
        if self.spec.tier == 3:
            facts = self.preflight().primary
            if facts.data_volume is not None:
                return snapshot_status(self.clients, facts.data_volume.volume_id)
        return ReplicationStatus("unknown", "none", None, None, None, None)

    def nodes(self) -> tuple[str, str]:
        """``(primary node, shadow node)`` as provisioned (their Route 53 set identifiers)."""
        return self.spec.nodes

    # -- traffic ---------------------------------------------------------------------------

    def get_weights(self) -> dict[str, int]:
        """Per node, the largest weight the ALB or Route 53 gives it."""
        return self.router.get()

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Set weights absolutely at the ALB and in Route 53, then record them in the stack.

        Returns once Route 53 *accepted* the change: waiting for INSYNC (tens of seconds on
        real AWS) would sit inside the cutover's shift step and its 3 s heartbeat timeout.
        The change id is recorded with the weights; :meth:`write_through_router` (the
        cutover's verify) waits for it with heartbeats.
        """
        checked_weights(self.spec, weights)  # refuse bad input before touching anything
        self._dns_change = self.router.set(weights, wait_dns=False) or self._dns_change
        if self.driver is not None:
            record_weights(self.driver, self.spec.stack_name, weights, self._dns_change)

    def wait_for_dns(self) -> None:
        """Wait until the last recorded Route 53 weight change is INSYNC (heartbeating
        through ``on_wait``); nothing to do without DNS or without a recorded change."""
        if self.router.dns is None:
            return
        change = self._dns_change
        if change is None and self.driver is not None:
            change = recorded_dns_change(self.driver, self.spec.stack_name)
        if change:
            self.router.dns.wait_insync(change, self.on_wait)

    def routes_service(self) -> bool:
        """The listener and/or the weighted records route the primary node.

        A listener or hosted zone that does not exist raises ``InvalidRequestError`` naming
        the spec field; AWS being unavailable raises a retryable ``InfraError``, never "no".
        """
        return self.spec.primary_node in self.router.get()

    def write_through_router(self, check_id: str) -> str:
        """Write to the node the routers' configuration sends all traffic to; return it.

        moto forwards no traffic and resolvers cache, so "through the router" means: the
        ALB's weights and target group and the Route 53 records all point at one node
        (:func:`infra.aws.routing_check.serving_node`), and that node takes the write.
        """
        self.wait_for_dns()
        node = serving_node(self.spec, self.clients, self.router, self.directory)
        self._app().write_check(self.directory.address(node), check_id)
        return node

    # -- fencing and promotion -------------------------------------------------------------

    def fence(self, node: str) -> None:
        """Weight 0 at the ALB and in DNS, then make the node refuse writes.

        With an application the database is fenced (read-only, every client session ended,
        confirmed) and the instance keeps running, so it can rejoin; without one, the
        instance is stopped when ``stop_on_fence`` (DNS alone fences nothing). The zero
        weight is not recorded in the stack: the cutover either shifts or restores weights,
        and both record theirs.
        """
        ec2_id = self.directory.ec2_id(node)
        self.router.set({node: 0}, wait_dns=False)  # the ALB and the database fence; DNS won't
        if self.application is not None:
            self.application.fence_writes(self.directory.address(node))
        self.control.set_role(ec2_id, "fenced")
        if self.application is None and self.spec.stop_on_fence and self.control.stop(ec2_id):
            log.info("Fenced %s: drained and stopped %s.", node, ec2_id)

    def unfence(self, node: str) -> None:
        """Start the instance if stopped, make the database writable, label it primary again.

        Weights are restored separately (absolutely) by the caller.
        """
        ec2_id = self.directory.ec2_id(node)
        self.control.start(ec2_id)
        if self.application is not None:
            self.application.unfence_writes(self.directory.address(node))
        if self.control.role(ec2_id) in (None, "fenced"):
            self.control.set_role(ec2_id, "primary")  # only a primary is ever fenced

    def promote(self, node: str) -> None:
        """Make ``node`` the writable primary (the application's promotion, then the label)."""
        ec2_id = self.directory.ec2_id(node)
        if self.control.role(ec2_id) == "fenced":
            raise InvalidRequestError(f"{node} is fenced; a fenced node cannot be promoted")
        if self.application is not None:
            self.application.promote(self.directory.address(node))
        self.control.set_role(ec2_id, "primary")

    def probe(self, node: str) -> Health:
        """Reachable: EC2 says running (and the database answers, when there is one).

        Writable comes from the database when there is one (the truth for "two writable
        primaries"), else from the role label.
        """
        ec2_id = self.directory.find_ec2_id(node)
        if ec2_id is None:
            return Health(False, False, f"no EC2 instance serves {node}")
        state = self.control.state(ec2_id)
        if state != "running":
            return Health(False, False, f"{ec2_id} is {state}")
        if self.application is not None:
            return self.application.health(self.directory.address(node))
        role = self.control.role(ec2_id) or self._default_role(node)
        detail = "" if role == "primary" else f"{ec2_id} is {role}"
        return Health(True, role == "primary", detail, in_recovery=role == "shadow")

    # -- cutover support -------------------------------------------------------------------

    def prepare_cutover(self, source: str) -> None:
        """``CHECKPOINT`` on the serving ``source`` before the window (run by preflight), as
        the local platform does: its I/O burst is over before the fence, and it is the last
        checkpoint both sides share. Nothing to do without a database."""
        if self.application is not None:
            self.application.checkpoint(self.directory.address(source))

    def fence_router(self, node: str) -> None:
        """Weight 0 for ``node`` at the ALB and in Route 53; needs nothing from the node.

        Route 53's propagation is not awaited: DNS alone fences nothing (resolvers cache), the
        ALB and stopping the node do."""
        self.router.set({node: 0}, wait_dns=False)

    def close_router_sessions(self, node: str) -> None:
        """Nothing to do: an ALB has no API to cut open connections to a target.

        New requests stop at weight 0; keep-alive connections end when the node is fenced or
        stopped, or at the load balancer's idle timeout.
        """
        log.info("ALB sessions to %s end with the node or at the idle timeout.", node)

    def stop_node(self, node: str) -> str | None:
        """Fence the database if it answers, then stop the instance if EC2 says it runs.

        The token is the instance id. The database fence comes first because the stop is
        only as good as EC2's word, and a database that refuses writes needs no such trust.
        """
        ec2_id = self.directory.ec2_id(node)
        if self.control.state(ec2_id) not in ("pending", "running"):
            return None
        if self.application is not None:
            try:
                self.application.fence_writes(self.directory.address(node))
            except InfraError as err:  # a failing node may not answer: the stop still holds
                log.warning("Could not fence the database of %s before stopping: %s", node, err)
        self.control.set_role(ec2_id, "fenced")
        return ec2_id if self.control.stop(ec2_id) else None

    def start_node(self, node: str, token: str) -> None:
        """Start the instance :meth:`stop_node` stopped (compensation); idempotent."""
        if token != self.directory.ec2_id(node):
            raise InvalidRequestError(f"token {token!r} is not {node}'s instance")
        self.control.start(token)

    def final_position(self, node: str) -> str:
        """The fenced primary's flushed WAL position (the application's answer)."""
        return self._app().final_position(self.directory.address(node))

    def replay_gap(self, node: str, position: str | None = None) -> int:
        """WAL bytes standby ``node`` has yet to replay to reach ``position``."""
        return self._app().replay_gap(self.directory.address(node), position)

    def replication_between(self, source: str, target: str) -> ReplicationStatus:
        """Standby ``target`` (its ``application_name`` is its node name) as ``source`` sees it."""
        return self._app().replication(self.directory.address(source), target)

    def inspect_node(self, node: str) -> NodeFacts:
        """Whether the node's instance is known; it cannot rejoin in place on AWS yet."""
        known = self.directory.find_ec2_id(node) is not None
        return NodeFacts(node, known, "", False,
                         f"{node}: a former primary on AWS is re-seeded, not rewound "
                         "(pg_rewind must run on its own host)")

    def rejoin(self, former: str) -> str:
        """Not on AWS yet: ``pg_rewind`` must run on the former primary's own host."""
        raise InvalidRequestError(
            f"{former} cannot rejoin in place on AWS (pg_rewind runs on its host); "
            "re-seed it: destroy_shadow, then provision_shadow"
        )

    def retire(self, former: str) -> bool:
        """Not on AWS yet: after a cutover the stack's instance is the serving primary, so
        destroying the stack would remove it; the protection stays degraded instead."""
        raise NotImplementedError(
            f"aws cannot retire the former primary {former} yet: its stack holds the serving "
            "primary after a cutover; forget or adopt the stack by hand"
        )

    def relaxed_by_supervisor(self) -> bool:
        """Tier 1's non-strict mode is not supervised on AWS (see :attr:`capabilities`)."""
        raise NotImplementedError("aws has no tier-1 sync supervisor")

    def probe_address(self, node: str) -> tuple[str, int] | None:
        """Outcome probes of AWS instances are not made from the worker (yet)."""
        return None

    def relax_sync(self) -> None:
        """Tier 1: the current primary stops waiting for its standby."""
        self._app().set_synchronous(self.directory.address(self._current_primary()), None)

    def restore_sync(self) -> None:
        """Tier 1: the current primary waits for its standby's flush again."""
        primary = self._current_primary()
        self._app().set_synchronous(self.directory.address(primary), self._other(primary))

    def close(self) -> None:
        """Close the application's cached sessions."""
        if self.application is not None:
            self.application.close()

    # -- helpers ---------------------------------------------------------------------------

    def _app(self) -> NodeApplication:
        if self.application is None:
            raise InvalidRequestError(
                f"{self.spec.instance_id} has no postgres section: tiers 1-2 cutovers need the "
                "database on both instances (add postgres: {port, user, dbname} to the spec)"
            )
        return self.application

    def _current_primary(self) -> str:
        """The node labelled primary (roles swap with cutovers); the provisioned one if none."""
        for node in self.spec.nodes:
            ec2_id = self.directory.find_ec2_id(node)
            if ec2_id is not None and self.control.role(ec2_id) == "primary":
                return node
        return self.spec.primary_node

    def _other(self, node: str) -> str:
        primary, shadow = self.spec.nodes
        return shadow if node == primary else primary

    def _default_role(self, node: str) -> str:
        return "primary" if node == self.spec.primary_node else "shadow"

    def _driver(self) -> StackDriver:
        if self.driver is None:
            raise InvalidRequestError(
                "this AwsPlatform has no Pulumi driver; it cannot change stacks"
            )
        return self.driver
