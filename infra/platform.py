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
