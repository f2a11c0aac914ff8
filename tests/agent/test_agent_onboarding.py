"""Onboarding an existing PostgreSQL: a cluster the agent did not make (plain ``initdb``, with
data, its configuration in its data directory, stopped), placed at the node's folder under the
agent's data root, is adopted by ``ensure_primary`` with its data, gains the agent's settings,
and can be copied to a standby on another host's agent."""

from __future__ import annotations

from pathlib import Path

from contracts.agent import LocalView, PrimarySource
from contracts.shadow import NodeFacts
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, PgServer, query_one
from tests.agent.conftest import Agents, Steps


async def test_ensure_primary_adopts_an_existing_cluster_with_its_data(
        agents: Agents, steps: Steps) -> None:
    """An operator's cluster at ``<data root>/db/data`` (made by plain ``initdb``, 2,000 rows,
    no ``wal_log_hints``, stopped) is started by ``ensure_primary`` without a new ``initdb``:
    the rows are there, ``wal_log_hints`` is on (so a former primary can be rewound later),
    the agent sees it writable and rewindable, and a standby seeded from it on a second
    agent has every row."""
    primary_agent = await agents.start()
    shadow_agent = await agents.start()
    port, standby_port = free_ports(2)
    existing = PgServer(home=primary_agent.data_root / "db", port=port)
    existing.init()
    existing.start()
    with existing.endpoint.connect() as conn:
        conn.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 2000) g")
        assert conn.execute("SHOW wal_log_hints").fetchone() == ("off",)
    system_id = _system_identifier(existing.endpoint)
    existing.stop()

    info = await steps.ensure(primary_agent.host, "db", port)

    assert not info.standby and Path(info.data_dir) == existing.data_dir
    endpoint = PgEndpoint(port=port)
    assert query_one(endpoint, "SELECT count(*) FROM orders") == 2000
    assert _system_identifier(endpoint) == system_id  # the same cluster, not a new initdb
    assert query_one(endpoint, "SHOW wal_log_hints") == "on"
    view = await steps.call(primary_agent.host, "probe_local", "db", port,
                            result_type=LocalView)
    assert view.answers and view.writable and not view.standby
    facts = await steps.call(primary_agent.host, "inspect_server", "db", port,
                             result_type=NodeFacts)
    assert facts.reachable and facts.rewindable

    standby = await steps.seed(shadow_agent.host, "db-shadow", standby_port,
                               PrimarySource("127.0.0.1", port, slot="db_shadow"))

    assert standby.standby
    assert query_one(PgEndpoint(port=standby_port), "SELECT count(*) FROM orders") == 2000


def _system_identifier(endpoint: PgEndpoint) -> int:
    return int(query_one(endpoint, "SELECT system_identifier FROM pg_control_system()"))
