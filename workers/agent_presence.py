"""Which agents serve a host, as Temporal sees them: the live pollers of its task queue.

Two callers ask: the agent at start-up (``workers/agent.py``: a second agent for a host is
refused) and ``shadowshift protect`` before it starts a protection on the hosts platform (a
host no agent serves, or whose agent runs another ShadowShift version, is refused naming the
spec field, before anything is created). One ``DescribeTaskQueue`` call per host, no workflow.

An agent's identity is ``shadowshift-agent/<version>@<host>/<pid>``
(``workers.agent.agent_identity``). Temporal lists a poller until it has not heard from it for
a while, also after the process died: a poller counts as live when Temporal heard from it
within :data:`POLLER_FRESH_S` (an idle worker's long poll is renewed about every minute).
Light on purpose: the CLI imports it, so only ``temporalio`` and ``contracts``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from contracts.agent import host_task_queue
from contracts.spec_hosts import HostsSection
from contracts.version import VERSION

POLLER_FRESH_S = 90.0
"""A poller Temporal heard from within this long is taken as alive."""
_AGENT_IDENTITY = re.compile(r"^shadowshift-agent/(?P<version>[^@]+)@")


@dataclass(frozen=True)
class HostPoller:
    """One live poller of a host's task queue."""

    identity: str
    """Its Temporal identity (an agent's: ``shadowshift-agent/<version>@<host>/<pid>``)."""
    seen_s_ago: float
    """Seconds since Temporal last heard from it."""

    @property
    def version(self) -> str | None:
        """The ShadowShift version in an agent's identity; ``None`` for another worker."""
        match = _AGENT_IDENTITY.match(self.identity)
        return match.group("version") if match else None


async def host_pollers(client: Client, host: str) -> list[HostPoller]:
    """The live pollers of ``host``'s activity task queue, freshest first."""
    response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=host_task_queue(host), kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
    now = time.time()
    pollers = [HostPoller(poller.identity or "an unnamed worker",
                          max(0.0, now - poller.last_access_time.ToSeconds()))
               for poller in response.pollers]
    return sorted((p for p in pollers if p.seen_s_ago <= POLLER_FRESH_S),
                  key=lambda p: p.seen_s_ago)


class HostNotServedError(Exception):
    """A host of a spec has no live agent, or one of another version; the message starts
    with the spec field (``hosts.shadow.host``) and says what to do."""


async def check_hosts_served(client: Client, section: HostsSection) -> dict[str, HostPoller]:
    """Each role's agent (``primary``, ``shadow``) as Temporal sees it.

    A poller whose identity is not an agent's is accepted as serving (its version unknown).

    Raises:
        HostNotServedError: a host has no live poller, or its agent runs another version.
    """
    found: dict[str, HostPoller] = {}
    for role in ("primary", "shadow"):
        host = getattr(section, role).host
        field = f"hosts.{role}.host {host!r}"
        pollers = await host_pollers(client, host)
        if not pollers:
            raise HostNotServedError(
                f"{field}: no agent serves host {host} (nothing polled task queue "
                f"{host_task_queue(host)} in namespace {client.namespace} in the last "
                f"{POLLER_FRESH_S:.0f} s): start `shadowshift agent --host {host}` on it, "
                "or fix the name")
        agreeing = [p for p in pollers if p.version in (None, VERSION)]
        if not agreeing:
            raise HostNotServedError(
                f"{field}: the agent of host {host} runs ShadowShift {pollers[0].version} "
                f"({pollers[0].identity}) and this shadowshift runs {VERSION}: run the same "
                "version on both sides")
        found[role] = agreeing[0]
    return found
