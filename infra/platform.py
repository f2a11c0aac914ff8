"""The contract every platform (local, aws, kubernetes) keeps for the workflows.

Words used throughout:

- **primary**: the node that accepts writes and receives traffic.
- **shadow**: a node kept in sync with the primary, receiving no traffic (weight 0).
- **fenced**: a node that cannot acknowledge new writes *and* receives no new traffic. Fencing
  is what makes "never two writable primaries behind the router" hold during a cutover.
- **promoted**: a former shadow that now accepts writes. Promotion is the point of no return.
- **weights**: absolute integers 0..100 per node of a service, never deltas, so retrying a
  weight change is always safe.

Every method is idempotent: calling it again after a crash, with the same arguments, converges
on the same state and never fails because the first call half-succeeded.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ReplicationStatus:
    """How far a shadow is behind its primary."""

    state: str
    """``streaming``, ``catchup``, ``archive`` (tier 3), ``stopped`` or ``unknown``."""
    sync_state: str
    """``sync``, ``async``, ``potential`` or ``none``."""
    lag_bytes: int | None
    """WAL bytes the shadow has not replayed yet; ``None`` when unknown."""
    lag_seconds: float | None
    """Replay lag in seconds as the primary measures it; ``None`` when unknown."""
    replay_position: str | None
    """The shadow's last replayed position (platform-specific, e.g. an LSN)."""
    primary_position: str | None
    """The primary's current write position."""
    bytes_shipped: int | None = None
    """Replication bytes sent to the shadow since it was seeded."""
    degraded: bool = False
    """Tier 1 only: synchronous replication was relaxed because the shadow was lost."""


@dataclass(frozen=True)
class Health:
    """Result of a health probe of one node."""

    reachable: bool
    """The node answered."""
    writable: bool
    """The node would accept a write now."""
    detail: str = ""
    """Why not, when not."""
    in_recovery: bool | None = None
    """The node is a standby replaying its primary's changes; ``None`` when unreachable."""


@dataclass(frozen=True)
class ShadowInfo:
    """What provisioning created."""

    instance_id: str
    """The protected instance."""
    shadow_node: str
    """Name of the shadow node (its router entry)."""
    outputs: Mapping[str, object] = field(default_factory=dict)
    """Platform-specific stack outputs (ports, paths, ids)."""


class Platform(abc.ABC):
    """Operations the workflows need from a platform.

    Implementations keep their own specifics (PostgreSQL, HAProxy, EC2, Route 53...) behind
    this interface so workflows and the cutover saga stay platform-neutral.
    """

    name: str

    @abc.abstractmethod
    def provision_shadow(self, on_progress: ProgressCallback | None = None) -> ShadowInfo:
        """Create the shadow (full copy, continuous sync, router entry at weight 0).

        Converges after a crash halfway; bad input raises ``InvalidRequestError`` and leaves
        nothing behind.
        """

    @abc.abstractmethod
    def destroy_shadow(self, on_progress: ProgressCallback | None = None) -> bool:
        """Remove every trace of the shadow; ``False`` when there was none."""

    @abc.abstractmethod
    def replication_status(self) -> ReplicationStatus:
        """Current replication state of the shadow."""

    @abc.abstractmethod
    def get_weights(self) -> dict[str, int]:
        """Current router weight per node of the service."""

    @abc.abstractmethod
    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Set router weights absolutely (0..100) for the named nodes."""

    @abc.abstractmethod
    def fence(self, node: str) -> None:
        """Make ``node`` unable to acknowledge writes and take it out of the router."""

    @abc.abstractmethod
    def unfence(self, node: str) -> None:
        """Undo :meth:`fence` (compensation before the point of no return)."""

    @abc.abstractmethod
    def promote(self, node: str) -> None:
        """Make the shadow ``node`` writable. After this there is no going back."""

    @abc.abstractmethod
    def probe(self, node: str) -> Health:
        """Whether ``node`` answers and would accept writes."""

    # -- cutover support -------------------------------------------------------------------
    # Not abstract, so platforms that have no cutover yet still instantiate; each raises
    # NotImplementedError until the platform implements it (the activities turn that into a
    # non-retryable failure naming the platform and the missing operation).

    def nodes(self) -> tuple[str, str]:
        """The pair's node names as provisioned: ``(primary node, shadow node)``.

        Roles swap with every cutover while the names stay; the router's weights (who serves)
        and :meth:`probe` (who is a standby) tell the current roles.
        """
        raise NotImplementedError(f"{self.name} does not name its nodes")

    def other_node(self, node: str) -> str:
        """The node of the pair that is not ``node``."""
        primary, shadow = self.nodes()
        return shadow if node == primary else primary

    def prepare_cutover(self, source: str) -> None:
        """Work that shortens the cutover's later steps but changes nothing clients see (a
        checkpoint on the serving ``source``, say), run by preflight so it stays out of the
        critical window. Optional and idempotent; the default does nothing."""
        return None

    def routes_service(self) -> bool:
        """Whether the router is up and has this instance's service (its entry point)."""
        raise NotImplementedError(f"{self.name} cannot inspect its router")

    def write_through_router(self, check_id: str) -> str:
        """Write a row keyed by ``check_id`` through the router, read it back; return the node
        that took it.

        The write is an upsert, so repeating the check is harmless. It raises ``InfraError``
        when the write or the read-back fails; it never retries on its own.
        """
        raise NotImplementedError(f"{self.name} cannot write through its router")

    def fence_router(self, node: str) -> None:
        """Take ``node`` out of the router: weight 0, disabled, its open sessions closed.

        This fence needs nothing from the node itself, so it works when the node is dead or
        unreachable (emergency cutover). Undo it with :meth:`set_weights`.
        """
        raise NotImplementedError(f"{self.name} has no router fence")

    def close_router_sessions(self, node: str) -> None:
        """Close client sessions the router still holds open to ``node``."""
        raise NotImplementedError(f"{self.name} cannot close router sessions")

    def stop_node(self, node: str) -> str | None:
        """Stop ``node``'s server if it can be reached; return what restarts it, else ``None``.

        The returned token (a data directory locally) goes to :meth:`start_node`.
        """
        raise NotImplementedError(f"{self.name} cannot stop nodes")

    def start_node(self, node: str, token: str) -> None:
        """Start a node stopped by :meth:`stop_node` again (compensation); idempotent."""
        raise NotImplementedError(f"{self.name} cannot start nodes")

    def final_position(self, node: str) -> str:
        """The durable write position of a fenced primary: every write it acknowledged is at
        or before it. On a standby, the position it has replayed."""
        raise NotImplementedError(f"{self.name} has no write positions")

    def replay_gap(self, node: str, position: str | None = None) -> int:
        """Bytes standby ``node`` still has to replay to reach ``position`` (everything it has
        received when ``None``); 0 or less means caught up."""
        raise NotImplementedError(f"{self.name} has no replay positions")

    def replication_between(self, source: str, target: str) -> ReplicationStatus:
        """Replication state of standby ``target`` as primary ``source`` sees it.

        Unlike :meth:`replication_status`, which follows the provisioned roles, this one
        works in either direction, so it still holds after a cutover swapped the roles.
        """
        raise NotImplementedError(f"{self.name} has no directional replication status")

    def rejoin(self, former: str, token: str | None = None) -> str:
        """Make the former primary ``former`` the standby of the node that replaced it.

        ``token`` is what :meth:`stop_node` returned when the node was stopped (``None``: ask
        the node). Idempotent; returns what was done in a few words. Raises
        ``InvalidRequestError`` when the node cannot rejoin and must be re-seeded instead.
        """
        raise NotImplementedError(f"{self.name} cannot rejoin a former primary")

    # -- tier 1 degrade (bounded non-strict synchronous replication) -------------------------

    def relax_sync(self) -> None:
        """Tier 1: stop making commits wait for a lost shadow (RPO > 0 until restored)."""
        raise NotImplementedError(f"{self.name} has no synchronous replication to relax")

    def restore_sync(self) -> None:
        """Tier 1: make commits wait for the shadow's acknowledgement again."""
        raise NotImplementedError(f"{self.name} has no synchronous replication to restore")

    def close(self) -> None:
        """Release cached connections; the object stays usable."""
        return None  # platforms without cached connections have nothing to release
