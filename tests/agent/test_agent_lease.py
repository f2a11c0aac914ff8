"""The lease on a real agent and real PostgreSQL: a primary that loses its renewals is fenced
within LEASE_S + LEASE_MARGIN_S; renewals, or a streaming standby alone, keep it writable; a
promoted standby stops covering it; an agent frozen for 3 s fences it at the thaw, whatever
renewals waited through the freeze; an agent restart keeps the lease armed."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import signal
import threading
import time
from dataclasses import dataclass, field

import psycopg

from contracts.agent import LEASE_MARGIN_S, LEASE_S, RENEW_INTERVAL_S, PrimarySource, ServerInfo
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, query_one
from tests.agent.conftest import AgentProcess, Agents, Steps, until


@dataclass
class Renewer:
    """The control worker's side of the lease: ``POST /lease/<node>`` every
    ``RENEW_INTERVAL_S`` from a thread, each answer recorded with its times."""

    agent: AgentProcess
    node: str
    timeout_s: float = 0.2
    answers: list[tuple[float, float, int]] = field(default_factory=list)
    """(sent, answered, status) per renewal; status 0 when none came."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Renewer:
        """Start renewing."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (returns once the last request ended)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def accepted(self) -> int:
        """How many renewals the agent accepted."""
        return sum(1 for _, _, status in self.answers if status == 200)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            status = 0
            with contextlib.suppress(OSError, http.client.HTTPException):
                status = self.agent.http("POST", f"/lease/{self.node}",
                                         timeout_s=self.timeout_s)[0]
            self.answers.append((sent, time.monotonic(), status))
            self._stop.wait(max(0.0, RENEW_INTERVAL_S - (time.monotonic() - sent)))


def writable(port: int) -> bool:
    """Whether the server at ``port`` takes a write now."""
    try:
        with PgEndpoint(port=port).connect(timeout_s=2) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS beat (at float8)")
            conn.execute("INSERT INTO beat VALUES (extract(epoch FROM now()))")
        return True
    except psycopg.Error:
        return False


async def stays_writable(port: int, pid: int, agent: AgentProcess, node: str,
                         window_s: float) -> None:
    """Throughout ``window_s``, the server keeps its postmaster and takes writes."""
    server = agent.catalog.find(node)
    assert server is not None
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        assert server.pg.pid() == pid, f"{node} was stopped: {agent.log_text()[-2000:]}"
        assert writable(port)
        await asyncio.sleep(0.1)


async def fenced_after(agent: AgentProcess, node: str, since: float, timeout_s: float) -> float:
    """Seconds from ``since`` (monotonic) until ``node``'s postmaster is gone."""
    server = agent.catalog.find(node)
    assert server is not None
    await until(lambda: server.pg.pid() is None, timeout_s, f"{node} fenced", every_s=0.005)
    return time.monotonic() - since


async def test_a_primary_without_renewals_is_fenced_within_the_bound(
        agents: Agents, steps: Steps) -> None:
    """Armed by one renewal and then left alone, the primary is fenced no sooner than LEASE_S
    and no later than LEASE_S + LEASE_MARGIN_S after it; later renewals are refused; a
    start_server brings it back under the same (still armed) lease."""
    agent = await agents.start()
    (port,) = free_ports(1)
    await steps.ensure(agent.host, "a", port)
    sent = time.monotonic()
    status, answer = agent.http("POST", "/lease/a")
    answered = time.monotonic()
    assert status == 200 and answer["accepted"], answer

    await fenced_after(agent, "a", sent, LEASE_S + LEASE_MARGIN_S + 5)
    gone = time.monotonic()
    assert gone - sent >= LEASE_S - 0.01
    assert gone - answered <= LEASE_S + LEASE_MARGIN_S, gone - answered
    print(f"\nlease lost -> fenced: {(gone - answered - LEASE_S) * 1000:.0f} ms "
          f"(renewal to postmaster gone {gone - answered:.3f} s)")
    assert "Lease of a lost" in agent.log_text()
    status, answer = agent.http("POST", "/lease/a")
    assert status == 409 and not answer["accepted"]
    _, health = agent.http("GET", "/health")
    assert [s["fenced"] for s in health["servers"] if s["node"] == "a"] == [True]

    await steps.call(agent.host, "start_server", "a", port, result_type=ServerInfo)
    restarted = time.monotonic()
    assert writable(port)
    await fenced_after(agent, "a", restarted, LEASE_S + LEASE_MARGIN_S + 5)
    assert time.monotonic() - restarted <= LEASE_S + LEASE_MARGIN_S


async def test_renewals_keep_the_primary_writable_until_disarmed(
        agents: Agents, steps: Steps) -> None:
    """Renewed every RENEW_INTERVAL_S, the primary keeps its postmaster and takes writes for
    three leases; disarmed (DELETE /lease), it is no longer governed by the lease at all."""
    agent = await agents.start()
    (port,) = free_ports(1)
    await steps.ensure(agent.host, "a", port)
    server = agent.catalog.find("a")
    assert server is not None and server.pg.pid() is not None
    pid = server.pg.pid()
    renewer = Renewer(agent, "a").start()
    try:
        await until(lambda: renewer.accepted() >= 1, 5, "the first renewal")
        await stays_writable(port, pid, agent, "a", 3 * LEASE_S)  # type: ignore[arg-type]
    finally:
        renewer.stop()
    status, answer = agent.http("DELETE", "/lease/a")
    assert status == 200 and answer["was_armed"]
    await stays_writable(port, pid, agent, "a", LEASE_S + LEASE_MARGIN_S)  # type: ignore[arg-type]
    assert all(status == 200 for _, _, status in renewer.answers[1:]), renewer.answers


async def test_a_streaming_standby_keeps_the_lease_until_it_is_promoted(
        agents: Agents, steps: Steps) -> None:
    """With no control worker, the replies of a streaming standby keep the armed primary
    writable; once the standby is promoted its replies stop and the former primary is fenced
    within LEASE_S + LEASE_MARGIN_S of the promotion."""
    agent = await agents.start()
    a_port, b_port = free_ports(2)
    await steps.ensure(agent.host, "a", a_port)
    renewer = Renewer(agent, "a").start()
    try:
        await steps.seed(agent.host, "b", b_port, PrimarySource("127.0.0.1", a_port, slot="b"))
    finally:
        renewer.stop()
    assert renewer.accepted() >= 1
    pid = agent.catalog.find("a").pg.pid()  # type: ignore[union-attr]
    await stays_writable(a_port, pid, agent, "a", 3 * LEASE_S)  # type: ignore[arg-type]

    promoted = time.monotonic()
    query_one(PgEndpoint(port=b_port), "SELECT pg_promote(true, 30)")
    elapsed = await fenced_after(agent, "a", promoted, LEASE_S + LEASE_MARGIN_S + 5)
    assert elapsed <= LEASE_S + LEASE_MARGIN_S, elapsed
    print(f"\nstandby promoted -> former primary fenced: {elapsed:.3f} s")
    assert writable(b_port)


async def test_an_agent_frozen_for_3_s_fences_its_primary_at_the_thaw(
        agents: Agents, steps: Steps) -> None:
    """SIGSTOP of the agent for 3 s while the control worker keeps renewing: at the thaw the
    agent sees the gap and fences the primary at once; none of the renewals that waited in
    its socket through the freeze is accepted."""
    agent = await agents.start()
    (port,) = free_ports(1)
    await steps.ensure(agent.host, "a", port)
    renewer = Renewer(agent, "a").start()
    try:
        await until(lambda: renewer.accepted() >= 4, 10, "renewals flowing")
        agent.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(3.0)  # the freeze itself: the stimulus, not a wait for a result
        assert writable(port), "the primary itself was never frozen"
        thawed = time.monotonic()
        agent.process.send_signal(signal.SIGCONT)
        elapsed = await fenced_after(agent, "a", thawed, 5)
    finally:
        renewer.stop()
    assert elapsed <= LEASE_MARGIN_S, elapsed
    print(f"\nagent thawed -> primary fenced: {elapsed * 1000:.0f} ms")
    after_thaw = [status for _, answered, status in renewer.answers if answered > thawed]
    assert after_thaw and 200 not in after_thaw, renewer.answers[-20:]


async def test_an_agent_restart_keeps_the_lease_armed(agents: Agents, steps: Steps) -> None:
    """The arming survives the agent: a new agent on the same data root restores the lease,
    fresh from its start, and fences the primary when nobody renews it."""
    first = await agents.start()
    (port,) = free_ports(1)
    await steps.ensure(first.host, "a", port)
    assert first.http("POST", "/lease/a")[0] == 200
    first.process.send_signal(signal.SIGKILL)  # before the lease runs out
    first.process.wait()
    assert writable(port)
    second = await agents.start(first.host, data_root=first.data_root)
    up = time.monotonic()
    elapsed = await fenced_after(second, "a", up, LEASE_S + LEASE_MARGIN_S + 5)
    assert elapsed <= LEASE_S + LEASE_MARGIN_S
    assert "Lease of a is armed; it runs from now." in second.log_text()


async def test_http_routes(agents: Agents, steps: Steps) -> None:
    """GET /health names the agent and each server's local view; GET /metrics/<node> is one
    MetricSample with the host's CPU and memory; unknown nodes and routes are 404, a bad
    renewal body 400, DELETE of an unarmed lease says so."""
    agent = await agents.start()
    (port,) = free_ports(1)
    await steps.ensure(agent.host, "a", port, instance="db-http")

    status, health = agent.http("GET", "/health")
    assert status == 200
    assert (health["host"], health["address"]) == (agent.host, "127.0.0.1")
    assert health["identity"] == (f"shadowshift-agent/{health['version']}@{agent.host}/"
                                  f"{agent.process.pid}")
    (view,) = health["servers"]
    assert view == {"node": "a", "answers": True, "writable": True, "standby": False,
                    "fenced": False, "detail": "", "port": port, "lease_remaining_s": None}

    status, first = agent.http("GET", "/metrics/a")
    assert status == 200 and first["instance_id"] == "db-http"
    assert first["cpu_percent"] is not None and 0 <= first["cpu_percent"] <= 100
    assert first["memory_percent"] is not None and 0 < first["memory_percent"] <= 100
    assert first["request_latency_ms"] is not None
    assert {"disk_latency_ms", "replication_lag_bytes", "restarts", "timestamp"} <= set(first)
    writable(port)
    _, second = agent.http("GET", "/metrics/a")
    assert second["requests_per_second"] is not None and second["timestamp"] > first["timestamp"]

    assert agent.http("GET", "/metrics/nope")[0] == 404
    assert agent.http("POST", "/lease/nope")[0] == 404
    assert agent.http("GET", "/nope")[0] == 404
    assert agent.http("GET", "/lease/a")[0] == 405
    conn = http.client.HTTPConnection("127.0.0.1", agent.http_port, timeout=5)
    conn.request("POST", "/lease/a", body=b"not json")
    assert conn.getresponse().status == 400
    conn.close()
    assert agent.http("DELETE", "/lease/a") == (200, {"node": "a", "was_armed": False})
