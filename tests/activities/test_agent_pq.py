"""Deadline-bounded queries (the agent's probes and lease evidence) against a real server."""

from __future__ import annotations

import pytest

from activities.agent_pq import DeadlineSession, QueryError
from tests.conftest import LocalService

pytestmark = pytest.mark.integration


def test_a_session_the_server_ends_fails_with_query_error_and_reconnects(
    local_service: LocalService,
) -> None:
    """The server terminating the session mid-use (a fence, a restart) is a ``QueryError``
    like any other failure, not libpq's own exception: the lease's reply reader died of it
    once, leaving a primary's lease to its control worker alone. The next call reconnects."""
    conninfo = local_service.primary.endpoint.conninfo()
    session = DeadlineSession(conninfo)
    try:
        ((pid,),) = session.query("SELECT pg_backend_pid()", 2.0)
        with local_service.primary.endpoint.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(%s::int)", (pid,))
        with pytest.raises(QueryError):
            session.query("SELECT 1", 2.0)
        assert session.query("SELECT 1", 2.0) == [("1",)]
    finally:
        session.close()
