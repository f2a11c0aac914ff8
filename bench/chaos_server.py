"""The chaos suite's Temporal dev server: persistent (SQLite file), so it can be restarted in
the middle of a scenario ("Temporal restarted during a cutover") and come back with every
workflow, on the same port, for the same clients, workers and agents to reconnect to."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts import search_attributes
from contracts.wire import DATA_CONVERTER
from infra.local.ports import free_port


class RestartableServer:
    """A dev server whose history lives in a file of its own (removed by :meth:`stop`)."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="ss-temporal-")
        self.port = free_port()
        self._env: WorkflowEnvironment | None = None
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """The first start's client (it reconnects after a restart on its own)."""
        assert self._client is not None, "start() first"
        return self._client

    async def start(self) -> Client:
        """Start (or start again) on the same port and database."""
        self._env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            port=self.port, dev_server_log_level="error",
            search_attributes=search_attributes.ALL, data_converter=DATA_CONVERTER,
            dev_server_extra_args=["--db-filename", str(Path(self._folder.name) / "dev.db")])
        if self._client is None:
            self._client = self._env.client
        return self._client

    async def restart(self) -> None:
        """Stop the server process and start it again (what a deploy or a crash-restart of
        the cluster does)."""
        if self._env is not None:
            await self._env.shutdown()
        await self.start()

    async def stop(self) -> None:
        """Stop it and remove its database."""
        if self._env is not None:
            await self._env.shutdown()
            self._env = None
        self._folder.cleanup()
