"""The wait the hosts program's tier settings depend on, against a real primary."""

from __future__ import annotations

import time

import pytest

from infra.hosts.streaming import wait_until_streaming
from tests.conftest import LocalService

pytestmark = pytest.mark.integration


def test_the_wait_gives_up_when_no_copy_is_connected(local_service: LocalService) -> None:
    """A copy that failed (nothing connected to the primary for its standby) ends the wait
    after ``no_copy_s``, naming the standby, instead of holding the ``up`` for the whole
    wait; the overall bound holds as well."""
    conninfo = local_service.primary.endpoint.conninfo()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no copy of db-standby"):
        wait_until_streaming(conninfo, "db-standby", timeout_s=60, no_copy_s=0.5)
    assert time.monotonic() - started < 5
    with pytest.raises(TimeoutError, match="did not stream within"):
        wait_until_streaming(conninfo, "db-standby", timeout_s=0.3, no_copy_s=60)
