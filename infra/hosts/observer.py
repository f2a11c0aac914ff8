"""How the fleet watcher reads protections on agent hosts, and the failure detector's votes.

- locate: the node HAProxy sends the traffic to (weights), as on the local platform.
- sample: the node's agent serves one metric sample (``GET /metrics/<node>``): host CPU and
  memory from the host's own cgroups, disk and PostgreSQL from inside the host.
- liveness: two vantage points every check, a third on demand —

  * ``control``: this worker's probe of the postmaster (:mod:`infra.local.probe`, 0.5 s);
  * ``router``: HAProxy's own health check of the server (its ``show stat`` status);
  * ``agent``: asked by the protection, through the host's task queue, only when fewer than
    ``contracts.protection.QUORUM`` of the others see the node down (``Liveness.confirm``).

  * ``disk``: a node that answers both but whose agent's latest sample found its data
    filesystem full (:data:`DISK_FULL_BYTES`) is down as well: every write fails while every
    probe passes. The sample cadence (the watcher's ``sample_interval_s``) bounds how soon
    that is seen.

  A probe that finds the node healthy renews its agent's lease (``POST /lease/<node>`` with the
  probe's time): the control worker stops renewing the moment it stops seeing the primary,
  which is what bounds how long a cut-off primary stays writable (``contracts.agent``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import psycopg

from contracts.agent import AGENT_HTTP_PORT
from contracts.agent_tasks import AgentTask
from contracts.protection import QUORUM
from contracts.shadow import PlatformRequest
from infra.errors import InfraError
from infra.hosts.placement import HostsShadowSpec
from infra.local.haproxy import HAProxyManager
from infra.local.observer import routed_node
from infra.local.probe import postmaster_answers
from infra.platform import (
    ALIVE,
    DOWN,
    SHIFTING,
    FleetObserver,
    Liveness,
    Located,
    NodeReading,
    ScheduledEvent,
)
from models.metrics import MetricSample

log = logging.getLogger(__name__)

AGENT_TIMEOUT_S = 0.5
"""Longest wait for the agent's HTTP answers (a lease renewal, a metric sample)."""
_SAMPLE_FIELDS = {f.name for f in dataclasses.fields(MetricSample)}


DISK_FULL_BYTES = 8 * 2**20
"""A serving primary whose data filesystem has less than this free for its OS user is failed
over like a dead one: half a WAL segment, so it cannot even start the next one, and every
write fails with ``could not extend file``/``No space left on device`` while the server
answers every liveness probe (measured on namespace hosts: PostgreSQL 16 stays up and
refuses writes for as long as the disk stays full)."""
DISK_READING_FRESH_S = 60.0
"""A disk reading older than this (no sample since: the agent does not answer) judges
nothing."""


class HostsObserver(FleetObserver):
    """Protections on agent hosts behind this worker's HAProxy."""

    name = "hosts"
    liveness_interval_s: ClassVar[float] = 0.25
    """Checks four times a second: the detector needs two observations to judge, and the
    lease it renews runs out after 1.5 s."""

    def __init__(self, state_dir: Path, *, server_ca: Path | None = None) -> None:
        """``server_ca``: the worker's CA of the hosts' servers (its SQL to a standby then
        uses ``verify-full``)."""
        self._state_dir = state_dir
        self._server_ca = server_ca
        self._haproxy = HAProxyManager(state_dir / "haproxy")
        self._free: dict[tuple[str, str], tuple[float, float]] = {}
        """(instance, node) -> (bytes its server may still write, when read), from the
        latest sample."""

    def locate(self, instances: Mapping[str, PlatformRequest]) -> dict[str, Located]:
        """The node with all the traffic, per protection (none mid-shift)."""
        found: dict[str, Located] = {}
        for instance_id, request in instances.items():
            located = self._serving(request)
            if located is not None:
                found[instance_id] = located
        return found

    def sample(self, instances: Mapping[str, PlatformRequest], located: Mapping[str, Located],
               now: float) -> dict[str, NodeReading]:
        """One sample of each serving node from its agent (left out when the agent does not
        answer: its host may be the one in trouble, and liveness judges that)."""
        readings: dict[str, NodeReading] = {}
        for instance_id, request in instances.items():
            node = self._serving(request) or located.get(instance_id)
            if node is None:
                continue
            spec = self._spec(request)
            address = spec.placement_of(node.node).address
            try:
                data = _get_json(f"http://{address}:{AGENT_HTTP_PORT}/metrics/{node.node}")
            except (OSError, ValueError) as err:
                log.debug("No sample of %s from its agent: %s", node.node, err)
                continue
            values = {k: v for k, v in data.items() if k in _SAMPLE_FIELDS}
            values["instance_id"] = instance_id
            free = data.get("data_free_bytes")
            if isinstance(free, int | float) and not isinstance(free, bool):
                self._free[(instance_id, node.node)] = (float(free), time.monotonic())
            readings[instance_id] = NodeReading(node, MetricSample(**values))
        return readings

    def scheduled_events(self, located: Mapping[str, Located]) -> dict[str, list[ScheduledEvent]]:
        """Hosts announce nothing (yet)."""
        return {}

    def liveness(self, instance: PlatformRequest, located: Located) -> Liveness | None:
        """The control worker's and the router's votes on the serving node; renews its
        agent's lease while the control worker sees it healthy."""
        serving = self._serving(instance)
        if serving is None:
            return Liveness(SHIFTING, "")
        spec = self._spec(instance)
        node = serving.node
        address, port = spec.placement_of(node).address, spec.port_of(node)
        observed_at = time.time()
        control = postmaster_answers(address, port)
        if control:
            _renew(address, node, observed_at)
        router = self._router_sees(spec, node)
        down = tuple(name for name, up in (("control", control), ("router", router)) if not up)
        up = tuple(name for name, seen in (("control", control), ("router", router)) if seen)
        if not down:
            if (full := self._disk_full(spec.instance_id, node)) is not None:
                # Writes fail with ENOSPC while the server answers every probe: its agent's
                # reading is the vantage point, and no partition can forge it.
                return Liveness(DOWN, serving.identity,
                                f"the data filesystem of {node} on {spec.host_of(node)} is "
                                f"full ({full:.0f} bytes free)", down=("disk",), up=up)
            return Liveness(ALIVE, serving.identity, up=up)
        confirm = None if len(down) >= QUORUM else AgentTask(spec.host_of(node),
                                                               probe=spec.call(node))
        return Liveness(DOWN, serving.identity,
                        f"{node} on {spec.host_of(node)} ({address}:{port}) is down for "
                        f"{' and '.join(down)}", down=down, up=up, confirm=confirm)

    def _disk_full(self, instance_id: str, node: str) -> float | None:
        """The free bytes of ``node``'s data filesystem when its latest sample (at most
        :data:`DISK_READING_FRESH_S` old) found it full, else ``None``."""
        reading = self._free.get((instance_id, node))
        if reading is None or time.monotonic() - reading[1] > DISK_READING_FRESH_S:
            return None
        return reading[0] if reading[0] < DISK_FULL_BYTES else None

    def standby_ready(self, instance: PlatformRequest, located: Located) -> bool:
        """The other node answers as a standby (and, when the serving node's disk is full,
        its own has room: a disk filled by the data itself is full on both, and moving
        traffic there would only move the outage)."""
        spec = self._spec(instance)
        standby = spec.other_node(located.node)
        endpoint = spec.endpoint_of(standby)
        try:
            with psycopg.connect(endpoint.conninfo(connect_timeout=2), autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.Error:
            return False
        if not (row and row[0]):
            return False
        if self._disk_full(spec.instance_id, located.node) is None:
            return True
        address = spec.placement_of(standby).address
        try:
            free = _get_json(f"http://{address}:{AGENT_HTTP_PORT}/metrics/{standby}").get(
                "data_free_bytes")
        except (OSError, ValueError):
            return True  # unknown: the standby answers, and the primary cannot write at all
        return not (isinstance(free, int | float) and free < DISK_FULL_BYTES)

    def _router_sees(self, spec: HostsShadowSpec, node: str) -> bool:
        """HAProxy's health check of ``node`` (``DOWN`` and going down count as down; a
        router we cannot ask says nothing against the node)."""
        try:
            stats = self._haproxy.stats(spec.instance_id)
        except InfraError:
            return True
        status = stats[node].status if node in stats else ""
        return not status.startswith("DOWN")

    def _serving(self, request: PlatformRequest) -> Located | None:
        spec = self._spec(request)
        node = routed_node(self._haproxy, spec.instance_id, (spec.primary_node, spec.shadow_node))
        if node is None:
            return None
        return Located(spec.instance_id, node,
                       f"{spec.placement_of(node).address}:{spec.port_of(node)}")

    def _spec(self, request: PlatformRequest) -> HostsShadowSpec:
        return HostsShadowSpec.from_request(request, self._state_dir,
                                            server_ca=self._server_ca)


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=AGENT_TIMEOUT_S) as response:
        data = json.loads(response.read())
    if not isinstance(data, dict):
        raise ValueError(f"{url} answered {type(data).__name__}, not an object")
    return data


def _renew(address: str, node: str, observed_at: float) -> None:
    """Renew ``node``'s lease with the probe's time (a late renewal buys nothing); a lost
    renewal is only logged: the standby's replies keep a healthy primary's lease too."""
    request = urllib.request.Request(
        f"http://{address}:{AGENT_HTTP_PORT}/lease/{node}", method="POST",
        data=json.dumps({"observed_at": observed_at}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=AGENT_TIMEOUT_S):
            pass
    except (OSError, urllib.error.HTTPError) as err:
        log.debug("Lease renewal of %s failed: %s", node, err)
