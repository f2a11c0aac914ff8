"""The node agent's contract: host-local activities on the host's own task queue.

A node agent (``shadowshift agent --host NAME``) is a Temporal worker that runs on one host
beside the PostgreSQL servers it manages, polling :func:`host_task_queue` of its host: Temporal's
worker-specific task queue pattern. The control worker keeps Pulumi (hosts, router entries,
weights, DNS/LB) and orchestration; what can only be done on the host itself — copy a standby
from its primary, start and stop a server, rewind a former primary, fence it, look at it from
inside — is an activity here, and a workflow routes it to the queue of the host it must run on.

The platform decides *what* an agent should do (it knows ports, slots and names) and hands
the workflow an :class:`~contracts.agent_tasks.AgentTask`; the workflow only routes it
(``workflows/agent_tasks.py``), so no platform knowledge enters workflow code.

Timeouts, chosen on purpose (an agent that is down is itself a failure signal):

- :data:`AGENT_PICKUP_S`: schedule-to-start of an agent task. A live agent polls its queue all
  the time and starts a task within milliseconds; 10 s leaves room for a busy host or a worker
  restart and still tells an operator quickly that the agent is not running.
- :data:`PROBE_PICKUP_S`: schedule-to-start of the failure detector's probe. Asked only when
  another vantage point already suspects the primary, and the failover waits for its answer:
  1 s is ~100 times a healthy pickup and well inside the 5 s failover goal.
- :data:`PROBE_ANSWER_S`: start-to-close of that probe (a frozen agent may hold the task).
- :data:`AGENT_HEARTBEAT_S`: heartbeat timeout of the long tasks (copy, rewind): they heartbeat
  every few seconds, so 30 s without one means the agent (or its host) is gone, and the task is
  retried, on the same queue, when it comes back.

The lease (how a primary that lost the control plane fences itself, as Patroni demotes a leader
that cannot renew its key):

- The agent keeps each primary it serves writable only while it holds a lease, renewed by either
  of two events: the control worker's probe found the primary healthy and told the agent so
  (HTTP ``POST /lease`` on the agent's port, about every :data:`RENEW_INTERVAL_S`), or the
  primary's standby replied recently (``pg_stat_replication.reply_time``; standbys send a reply
  every second). A promoted standby stops replying, so the second source cannot keep a lease
  alive once a failover has promoted the shadow.
- When neither happened for :data:`LEASE_S`, the agent fences the primary: SIGKILL of the
  postmaster and its children (works on a hung server too) and a marker that keeps it down.
  A host that was frozen sees the gap the moment it thaws and fences before anything else.
- The control side never promotes a shadow in an emergency before the former primary was cut
  off (router fence and network isolation) *and* :data:`LEASE_S` + :data:`LEASE_MARGIN_S` have
  passed since: by then the standby's replies have stopped for that long and the control worker
  no longer renews, so a live agent has fenced its primary. Fencing therefore always happens
  before the failover completes, with or without the network isolation.
- Neither a control worker restart nor a Temporal restart fences anything: the standby keeps
  replying. Only a primary cut off from both its control worker and its standby fences itself.
- A node's lease is armed by the control worker's first ``POST /lease/<node>`` and stays
  armed (across agent restarts) until ``DELETE /lease/<node>`` or ``destroy_server``: a
  primary never renewed is not under protection and is never fenced (an agent installed before
  its control worker cannot take down the databases it finds). A renewal carries
  ``{"observed_at": <Unix time>}`` of the probe that justified it, so a renewal delayed on the
  way buys no extra time; one arriving after the lease of a serving primary ran out is refused
  (409) and does not revive it: a thawed host fences first.
- ``fence_server`` returns whether the server was running; ``seed_standby``'s
  ``seed_seconds`` is the recorded duration of the copy, also when a retry finds it done.

Credentials: ``PrimarySource`` names a role, never a credential. An agent given TLS files
(``SHADOWSHIFT_PG_TLS_*``) streams with ``sslmode=verify-full`` and reads the role's password
from the passfile on its own host (``SHADOWSHIFT_PG_PASSFILE``), and its servers take
replication from the network only over TLS with SCRAM (``activities/agent_security.py``);
without them its servers trust their subnet, a test-world setting ``docs/agent.md`` explains.
``hello`` with ``stream_from`` checks such a login before a protection creates anything.
Promotion is SQL from the control worker (``pg_promote``), so it needs no agent task.
"""

from __future__ import annotations

from temporalio import activity

from contracts.agent_tasks import (
    AgentCall,
    AgentHello,
    AgentInfo,
    AgentTask,
    EnsurePrimaryRequest,
    LocalView,
    PrimarySource,
    RewindRequest,
    SeedRequest,
    ServerInfo,
    ServerRef,
)
from contracts.shadow import NodeFacts

__all__ = [
    "AGENT_DOWN", "AGENT_HEARTBEAT_S", "AGENT_HTTP_PORT", "AGENT_PICKUP_S", "AGENT_QUEUE_PREFIX",
    "LEASE_MARGIN_S", "LEASE_S", "PROBE_ANSWER_S", "PROBE_PICKUP_S", "RENEW_INTERVAL_S",
    "VERSION_MISMATCH",
    "AgentActivities", "AgentCall", "AgentHello", "AgentInfo", "AgentTask",
    "EnsurePrimaryRequest", "LocalView", "PrimarySource", "RewindRequest", "SeedRequest",
    "ServerInfo", "ServerRef", "host_task_queue",
]

AGENT_QUEUE_PREFIX = "shadowshift-host-"
"""Prefix of every host's task queue."""
AGENT_HTTP_PORT = 8787
"""Default port of the agent's HTTP endpoint (health, lease renewal, metrics) on its host's
address."""
AGENT_PICKUP_S = 10.0
"""Schedule-to-start timeout of an agent task (see the module docstring)."""
PROBE_PICKUP_S = 1.0
"""Schedule-to-start timeout of the failure detector's probe."""
PROBE_ANSWER_S = 1.0
"""Start-to-close timeout of the failure detector's probe: the agent's own check of its server
takes at most half a second. A frozen host's agent can hold a task the server already handed
to its long poll (pickup then looks instant), so the answer needs its own bound: a late
answer is a vote *down*."""
AGENT_HEARTBEAT_S = 30.0
"""Heartbeat timeout of the agent's long tasks."""
LEASE_S = 1.5
"""How long an agent keeps a primary writable without a renewal (see the module docstring): long
enough for a control worker that pauses (a 2-core machine under load stalls for hundreds of
milliseconds) as long as the standby replies, short enough to stay inside the 5 s failover
goal."""
LEASE_MARGIN_S = 0.5
"""Added to :data:`LEASE_S` on the control side: the agent's check interval (0.1 s), the time a
SIGKILL takes, and clock differences between the two processes."""
RENEW_INTERVAL_S = 0.25
"""How often the control worker's probe renews a healthy primary's lease."""
VERSION_MISMATCH = "AgentVersionMismatch"
"""Error type of a task refused because the caller runs another ShadowShift version (not
retried: the message names both versions)."""
AGENT_DOWN = "AgentDown"
"""Error type the workflows use when an agent did not pick a task up in time."""


def host_task_queue(host: str) -> str:
    """The task queue the agent of ``host`` polls."""
    return f"{AGENT_QUEUE_PREFIX}{host}"


class AgentActivities:
    """Host-local activities, run by the agent of the host on :func:`host_task_queue`. Every
    one is idempotent and refuses a caller of another version (:data:`VERSION_MISMATCH`)."""

    @activity.defn
    def hello(self, request: AgentHello) -> AgentInfo:
        """Who the agent is; refuses another version, and with ``stream_from`` a primary its
        host's standbys could not log in to for replication (``InvalidRequest``)."""
        raise NotImplementedError

    @activity.defn
    def ensure_primary(self, request: EnsurePrimaryRequest) -> ServerInfo:
        """Initialise (if empty) and start a primary server listening on the host's address."""
        raise NotImplementedError

    @activity.defn
    def seed_standby(self, request: SeedRequest) -> ServerInfo:
        """Copy the standby from its primary (heartbeating progress), write its standby
        settings and start it; finishes a copy a crash interrupted."""
        raise NotImplementedError

    @activity.defn
    def inspect_server(self, request: AgentCall) -> NodeFacts:
        """Whether the server's data is there and could be rewound; changes nothing."""
        raise NotImplementedError

    @activity.defn
    def rewind_as_standby(self, request: RewindRequest) -> str:
        """Stop the former primary, ``pg_rewind`` it from the new primary, start it as its
        standby; returns what was done. Fails non-retryably when it cannot be rewound."""
        raise NotImplementedError

    @activity.defn
    def start_server(self, request: AgentCall) -> ServerInfo:
        """Start a stopped server (clears a fence)."""
        raise NotImplementedError

    @activity.defn
    def stop_server(self, request: AgentCall) -> bool:
        """Stop a server; ``False`` when it was not running."""
        raise NotImplementedError

    @activity.defn
    def fence_server(self, request: AgentCall) -> bool:
        """Stop a server and keep it down (survives an agent restart) until started again."""
        raise NotImplementedError

    @activity.defn
    def destroy_server(self, request: AgentCall) -> bool:
        """Stop a server and delete its data; ``False`` when there was none."""
        raise NotImplementedError

    @activity.defn
    def probe_local(self, request: AgentCall) -> LocalView:
        """The server as seen from inside its host (the failure detector's agent vote)."""
        raise NotImplementedError
