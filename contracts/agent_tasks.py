"""What a platform asks of a node agent, as data: the requests of ``contracts.agent``'s
activities and :class:`AgentTask`, which carries one of them to the workflow that routes it.

Separate from ``contracts.agent`` (the activity signatures) so ``contracts.shadow`` can carry an
``AgentTask`` in its results without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServerRef:
    """One PostgreSQL server an agent manages on its host."""

    instance_id: str
    """The protected instance it belongs to."""
    node: str
    """Its node name (router entry and ``application_name``); its data lives under the
    agent's data root in a folder of this name."""
    port: int
    """Port it listens on, on the host's address."""


@dataclass
class PrimarySource:
    """Where a standby streams from."""

    address: str
    """Address of the primary's host."""
    port: int
    """Its port."""
    user: str = "postgres"
    """Replication role."""
    slot: str = ""
    """Physical replication slot on the primary (empty: none)."""


@dataclass
class AgentCall:
    """A task about one server of the agent's host."""

    version: str
    """The caller's ShadowShift version; a different one is refused."""
    server: ServerRef
    """The server."""


@dataclass
class EnsurePrimaryRequest:
    """Make sure a primary server exists and runs (onboarding, demo, tests)."""

    version: str
    """The caller's ShadowShift version."""
    server: ServerRef
    """The server; initialised when its data directory is empty."""
    settings: dict[str, str] = field(default_factory=dict)
    """Extra ``postgresql.conf`` settings (``wal_log_hints`` is always on, so a former
    primary can be rewound)."""


@dataclass
class SeedRequest:
    """Copy a standby from its primary and start it."""

    version: str
    """The caller's ShadowShift version."""
    server: ServerRef
    """The standby to create."""
    source: PrimarySource
    """Its primary."""


@dataclass
class RewindRequest:
    """Turn a former primary into the standby of the node that replaced it."""

    version: str
    """The caller's ShadowShift version."""
    server: ServerRef
    """The former primary."""
    source: PrimarySource
    """The new primary."""


@dataclass
class AgentHello:
    """What a caller says when it first talks to an agent."""

    version: str
    """The caller's ShadowShift version."""
    stream_from: PrimarySource | None = None
    """A primary this host's standby is about to stream from: the agent first checks it
    could (its passfile, its CA, a replication login) and refuses, naming what to change."""


@dataclass
class AgentInfo:
    """An agent's answer to :class:`AgentHello`."""

    host: str
    """Host it serves."""
    version: str
    """Its ShadowShift version."""
    address: str
    """Host address its servers listen on."""
    free_bytes: int
    """Free space of its data filesystem."""


@dataclass
class ServerInfo:
    """A server as the agent left it."""

    node: str
    """Its node name."""
    address: str
    """Host address."""
    port: int
    """Port."""
    standby: bool
    """Whether it is a standby."""
    data_dir: str
    """Its data directory on the host."""
    seed_seconds: float | None = None
    """How long the copy took, when this task made one."""


@dataclass
class LocalView:
    """A server as its agent sees it from inside the host: one of the failure detector's
    vantage points."""

    node: str
    """The server's node name."""
    answers: bool
    """It answered a query on the host."""
    writable: bool
    """It would accept a write."""
    standby: bool | None
    """It is a standby (``None``: did not answer)."""
    fenced: bool
    """The agent has fenced it (stopped and kept down until told otherwise)."""
    detail: str = ""
    """Why not, when not."""


@dataclass
class AgentTask:
    """One host-local task a platform wants run, as the workflow routes it: exactly one of
    the request fields is set."""

    host: str
    """The host whose agent must run it."""
    seed: SeedRequest | None = None
    """Copy and start a standby."""
    rewind: RewindRequest | None = None
    """Rewind a former primary into a standby."""
    inspect: AgentCall | None = None
    """Look at a server's data (recovery asks whether it can rejoin)."""
    destroy: AgentCall | None = None
    """Stop a server and delete its data."""
    fence: AgentCall | None = None
    """Stop a server and keep it down."""
    probe: AgentCall | None = None
    """Look at a server from inside its host (the failure detector's agent vote)."""
    ensure_primary: EnsurePrimaryRequest | None = None
    """Create (if empty) and start a primary (onboarding a new instance, the demo)."""
    hello: AgentHello | None = None
    """Ask the agent who it is (and whether it runs our version)."""
    pickup_s: float | None = None
    """How long its agent may take to pick the task up (default: the usual pickup timeout,
    ``contracts.agent.AGENT_PICKUP_S``); a host that is still booting (a new EC2 instance
    running its user data) needs minutes."""

    def what(self) -> str:
        """One line for the Web UI's timeline."""
        for kind in ("seed", "rewind", "inspect", "destroy", "fence", "probe",
                     "ensure_primary"):
            call = getattr(self, kind)
            if call is not None:
                return f"{kind.replace('_', ' ')} {call.server.node} on {self.host}"
        return f"hello to {self.host}" if self.hello is not None else f"nothing on {self.host}"
