"""The platform contract: everything that differs between platforms, in two abstract classes.

- :class:`Platform` — one protected instance's pair of nodes: the shadow's lifecycle, the
  cutover's steps, the recovery of a former primary, tier 1's synchronous mode. Built per
  request by ``infra.factory.platform_for``.
- :class:`FleetObserver` — how the fleet watcher reads one platform's protections: which node
  serves, new metric samples, scheduled events, whether the serving node is alive. Batched:
  one call covers every protection of the platform (CloudWatch answers 500 queries a call).

A platform is one package under ``infra/`` implementing both, one line in ``infra.factory``,
and the conformance suite (``tests/platforms/``) passing; ``docs/platforms.md`` explains the
contract for a new implementer.

Words used throughout:

- **primary**: the node that accepts writes and receives traffic.
- **shadow** / **standby**: a node kept in sync with the primary, receiving no traffic.
- **fenced**: a node that cannot acknowledge new writes *and* receives no new traffic. Fencing
  is what makes "never two writable primaries behind the router" hold during a cutover.
- **promoted**: a former standby that now accepts writes. Promotion is the point of no return.
- **weights**: absolute integers 0..100 per node of a service, never deltas, so retrying a
  weight change is always safe.

Every :class:`Platform` method is idempotent: calling it again after a crash, with the same
arguments, converges on the same state and never fails because the first call half-succeeded.
Errors: ``InvalidRequestError`` for what retrying cannot fix (bad input, impossible request),
``InfraError`` for the rest; a method a platform cannot offer raises ``NotImplementedError``
naming the platform, and says so in its :attr:`Platform.capabilities`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from contracts.agent_tasks import AgentTask
from contracts.shadow import Capabilities, Health, NodeFacts, PlatformRequest, ReplicationStatus
from infra.pg_security import ReplicationSecurity
from infra.pulumi_engine import StackDriver
from models.metrics import MetricSample

ProgressCallback = Callable[[str], None]

__all__ = [
    "ALIVE", "DOWN", "SHIFTING", "UNSEEN", "Capabilities", "FleetObserver", "Health",
    "Liveness", "Located", "NodeFacts", "NodeReading", "Platform", "PlatformContext",
    "PlatformRequest", "ProgressCallback", "ReplicationStatus", "ScheduledEvent", "ShadowInfo",
]


@dataclass(frozen=True)
class PlatformContext:
    """What every platform builder may use: the stack driver and the worker's state dir."""

    driver: StackDriver | None
    """Pulumi driver (``None`` for callers that never change stacks, e.g. the watcher)."""
    state_dir: Path
    """The worker's state directory."""
    kubeconfig: Path | None = None
    """The cluster of platform ``kubernetes`` (``SHADOWSHIFT_KUBECONFIG``)."""
    pg_security: ReplicationSecurity = field(default_factory=ReplicationSecurity)
    """TLS and password of replication connections (``SHADOWSHIFT_PG_*``; default: neither,
    for callers that never set up replication)."""


@dataclass(frozen=True)
class ShadowInfo:
    """What provisioning created."""

    instance_id: str
    """The protected instance."""
    shadow_node: str
    """Name of the shadow node (its router entry)."""
    outputs: Mapping[str, object] = field(default_factory=dict)
    """Platform-specific stack outputs (ports, paths, ids)."""
    agent_task: AgentTask | None = None
    """Not finished (platforms with agents): the workflow runs this on its host and asks
    for provisioning again, which then converges further."""
    copy_alongside: bool = False
    """The next provisioning call may run while :attr:`agent_task` does (see
    ``contracts.shadow.ProvisionResult.copy_alongside``)."""


class Platform(abc.ABC):
    """Operations on one protected instance and its shadow.

    Node names are fixed at provisioning (:meth:`nodes`); roles swap with every cutover. The
    request the platform was built from says which node serves now.
    """

    name: ClassVar[str]
    """The ``platform`` value of specs it serves."""
    capabilities: ClassVar[Capabilities]
    """What it offers beyond the common core (returned to the protection at provisioning)."""

    # -- shadow lifecycle ------------------------------------------------------------------

    @abc.abstractmethod
    def provision_shadow(self, on_progress: ProgressCallback | None = None) -> ShadowInfo:
        """Create the shadow of the serving node: full copy, continuous sync at the spec's
        tier, router entry at weight 0. Converges after a crash halfway.

        Raises:
            InvalidRequestError: what retrying cannot fix (unreachable primary, missing
                rights, no disk); nothing is left behind.
        """

    @abc.abstractmethod
    def destroy_shadow(self, on_progress: ProgressCallback | None = None) -> bool:
        """Remove every trace of the standby side (never the serving node); ``False`` when
        there was none."""

    @abc.abstractmethod
    def replication_status(self) -> ReplicationStatus:
        """Replication state of the standby of the current roles."""

    @abc.abstractmethod
    def inspect_node(self, node: str) -> NodeFacts:
        """Where ``node``'s data lives and whether it could rejoin in place after a cutover
        (with advice when not); changes nothing and never raises for a node that is down."""

    @abc.abstractmethod
    def rejoin(self, former: str) -> str:
        """Make the former primary ``former`` the standby of the node that replaced it, in
        place, and record the roles (a stack update that copies nothing). Returns what was
        done in a few words.

        Raises:
            InvalidRequestError: ``former`` cannot rejoin (data gone, cannot be rewound,
                still serving): retire it instead.
        """

    def host_tasks(self, purpose: str, node: str) -> list[AgentTask]:
        """Agent tasks to run, in order, before the control-side step of ``purpose``
        (``rejoin``, ``retire``, ``destroy``; see ``contracts.shadow.HostTasksRequest``).
        Only platforms whose capabilities say ``agents`` have any."""
        return []

    @abc.abstractmethod
    def retire(self, former: str) -> bool:
        """Record the roles, then remove ``former``'s side (the standby of the new roles)
        so that a fresh shadow can be provisioned; ``False`` when nothing was left."""

    # -- the cutover -----------------------------------------------------------------------

    @abc.abstractmethod
    def nodes(self) -> tuple[str, str]:
        """The pair's node names as provisioned: ``(original primary, shadow)``."""

    def other_node(self, node: str) -> str:
        """The node of the pair that is not ``node``."""
        primary, shadow = self.nodes()
        return shadow if node == primary else primary

    @abc.abstractmethod
    def routes_service(self) -> bool:
        """Whether the router is up and has this instance's service (its entry point)."""

    @abc.abstractmethod
    def get_weights(self) -> dict[str, int]:
        """Current router weight per node of the service."""

    @abc.abstractmethod
    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Set router weights absolutely (0..100) for the named nodes; a positive weight also
        undoes :meth:`fence_router`."""

    @abc.abstractmethod
    def fence(self, node: str) -> None:
        """Make ``node`` unable to acknowledge writes and take it out of the router."""

    @abc.abstractmethod
    def unfence(self, node: str) -> None:
        """Undo :meth:`fence` (compensation before the point of no return)."""

    @abc.abstractmethod
    def fence_router(self, node: str) -> None:
        """Take ``node`` out of the router: weight 0, disabled, its sessions closed. Needs
        nothing from the node itself, so it works when the node is dead or unreachable."""

    @abc.abstractmethod
    def close_router_sessions(self, node: str) -> None:
        """Close client sessions the router still holds open to ``node``."""

    @abc.abstractmethod
    def stop_node(self, node: str) -> str | None:
        """Stop ``node``'s server if it can be reached; return what restarts it (for
        :meth:`start_node`), else ``None``."""

    @abc.abstractmethod
    def start_node(self, node: str, token: str) -> None:
        """Start a node stopped by :meth:`stop_node` again (compensation)."""

    @abc.abstractmethod
    def promote(self, node: str) -> None:
        """Make the standby ``node`` writable and wait until it is; no-op on a primary. A
        fenced former primary is never made writable by it (refused, or nothing done)."""

    @abc.abstractmethod
    def probe(self, node: str) -> Health:
        """Whether ``node`` answers, accepts writes, and is a standby."""

    @abc.abstractmethod
    def final_position(self, node: str) -> str:
        """The durable write position of a fenced primary: every write it acknowledged is at
        or before it. On a standby, the position it has replayed."""

    @abc.abstractmethod
    def replay_gap(self, node: str, position: str | None = None) -> int:
        """Bytes standby ``node`` still has to replay to reach ``position`` (everything it has
        received when ``None``); 0 or less means caught up."""

    @abc.abstractmethod
    def replication_between(self, source: str, target: str) -> ReplicationStatus:
        """Replication state of standby ``target`` as primary ``source`` sees it (works in
        either direction, unlike :meth:`replication_status`)."""

    @abc.abstractmethod
    def prepare_cutover(self, source: str) -> None:
        """Work that shortens the cutover's later steps but changes nothing clients see (a
        checkpoint on the serving ``source``), run by preflight outside the critical window."""

    @abc.abstractmethod
    def write_through_router(self, check_id: str) -> str:
        """Write a row keyed by ``check_id`` through the router, read it back; return the node
        that took it. An upsert, so repeating it is harmless.

        Raises:
            InfraError: the write or the read-back failed (never retried here).
        """

    # -- tier 1's synchronous mode ---------------------------------------------------------

    @abc.abstractmethod
    def relax_sync(self) -> None:
        """Tier 1: stop making commits wait for a lost shadow (RPO > 0 until restored), and
        remember that the supervisor did it."""

    @abc.abstractmethod
    def restore_sync(self) -> None:
        """Tier 1: make commits wait for the shadow's acknowledgement again; forget the
        supervisor's mark."""

    @abc.abstractmethod
    def relaxed_by_supervisor(self) -> bool:
        """Whether the current relaxed mode is the supervisor's doing (the stack also clears
        the setting, on purpose, while it destroys a shadow: that one is not ours to undo)."""

    # -- the feedback loop -----------------------------------------------------------------

    @abc.abstractmethod
    def probe_address(self, node: str) -> tuple[str, int] | None:
        """Host and port where the outcome probes reach ``node``'s PostgreSQL from this
        worker; ``None`` when it cannot be probed from here."""

    def close(self) -> None:
        """Release cached connections; the object stays usable."""
        return None  # platforms without cached connections have nothing to release


# -- the fleet watcher's side --------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """Where a protection's traffic goes, as one discovery found it."""

    instance_id: str
    """The protected instance."""
    node: str
    """The serving node (the one sampled)."""
    identity: str
    """What is sampled, e.g. a port or an EC2 instance id: a new identity starts a fresh
    metric window (a different host with a history of its own)."""


@dataclass(frozen=True)
class NodeReading:
    """A metric sample and the node it was read from."""

    located: Located
    """The node sampled."""
    sample: MetricSample
    """Its reading."""


ALIVE, DOWN, SHIFTING, UNSEEN = "alive", "down", "shifting", "unseen"
"""States of a :class:`Liveness` observation."""


@dataclass(frozen=True)
class Liveness:
    """One observation of a protection's serving node."""

    state: str
    """``alive`` (it answers; a server refusing our credentials counts), ``down``,
    ``shifting`` (no single node serves: a cutover is moving traffic, nothing to judge) or
    ``unseen`` (the platform could not be asked: an outage seen before starts over)."""
    key: str
    """Identity of the serving node (a port, an EC2 instance id), so an outage of one node
    is handled once."""
    what: str = ""
    """How a ``down`` node was judged, for the log (``port 5433 has not answered``)."""
    down: tuple[str, ...] = ()
    """Vantage points that saw it down (``control``, ``router``...); empty: the platform has
    one, and ``state`` is its verdict."""
    up: tuple[str, ...] = ()
    """Vantage points that saw it answer."""
    confirm: AgentTask | None = None
    """With fewer than ``contracts.protection.QUORUM`` vantage points down: the probe that
    asks the node's own agent, which the protection runs before it fails over."""


@dataclass(frozen=True)
class ScheduledEvent:
    """An event the platform announces for a node (maintenance, retirement, impaired check)."""

    key: str
    """Stable identity, so each event is signalled once."""
    kind: str
    """Short name, e.g. ``system-maintenance``."""
    detail: str
    """For the operator."""
    severity: float
    """0..1, as ``ExternalEvent.severity``."""


class FleetObserver(abc.ABC):
    """How the fleet watcher reads one platform's protections; blocking, called from threads.

    Calls are batched over the platform's protections, keyed by instance id; a protection the
    platform cannot see now is left out of the answer (the watcher keeps what it knew).
    """

    name: ClassVar[str]
    """The ``platform`` value of specs it reads."""
    liveness_interval_s: ClassVar[float] = 1.0
    """How often the failure detector asks :meth:`liveness` of each protection."""

    @abc.abstractmethod
    def locate(self, instances: Mapping[str, PlatformRequest]) -> dict[str, Located]:
        """The serving node of each protection; left out when none serves alone (mid-shift)
        or it cannot be found.

        Raises:
            InfraError: the platform could not be asked at all.
        """

    @abc.abstractmethod
    def sample(self, instances: Mapping[str, PlatformRequest], located: Mapping[str, Located],
               now: float) -> dict[str, NodeReading]:
        """A new metric sample of each protection's serving node, if one exists (a metrics
        service with a fixed period has none between two datapoints), keyed by instance id.
        The node is the one serving *now*, which may differ from ``located`` after a cutover
        (the reading says which).

        Raises:
            InfraError: the platform could not be asked at all.
        """

    @abc.abstractmethod
    def scheduled_events(self, located: Mapping[str, Located]) -> dict[str, list[ScheduledEvent]]:
        """Events the platform announces for each located node (none for most platforms)."""

    @abc.abstractmethod
    def liveness(self, instance: PlatformRequest, located: Located) -> Liveness | None:
        """Whether the node serving *now* is alive (after a cutover, not ``located`` any more),
        or ``None`` when there is no new observation (a platform that learns it only at
        :meth:`locate` answers once per locate). Cheap: called about every second for each
        protected instance."""

    @abc.abstractmethod
    def standby_ready(self, instance: PlatformRequest, located: Located) -> bool:
        """Whether the other node is a standby that could be promoted now (asked only when a
        failover is due)."""
