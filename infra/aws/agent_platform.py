"""The AWS platform with the node agent on the shadow's instance: the standby is seeded.

Without an agent the shadow instance gets an empty volume (nothing runs on it to copy the
database). With ``aws.agent`` in the spec, the program's user data starts the agent on the new
instance (:mod:`infra.aws.user_data`), and provisioning hands the workflow the copy for it,
as on the hosts platform: ``pulumi up`` (instance, volume, records) first, since the agent
lives on the instance it creates; then, while the standby does not stream, an
``AgentTask(seed=...)`` addressed to the shadow node's queue, with the pickup time of an
instance that is still booting (``agent.boot_s``); the workflow runs it and asks again. The
slot on the primary is made before the copy is handed out, so the primary keeps the WAL the
copy needs.

The primary's own instance may run an agent too (installed by the operator, as on any VM);
this platform does not need it: rejoin stays a re-seed on AWS (:class:`AwsPlatform`).
"""

from __future__ import annotations

import dataclasses

from contracts.agent_tasks import AgentTask, PrimarySource, SeedRequest, ServerRef
from contracts.version import VERSION
from infra.aws.application import PostgresApplication
from infra.aws.platform import AwsPlatform
from infra.local.seed import ensure_slot
from infra.platform import ProgressCallback, ShadowInfo


def slot_name(node: str) -> str:
    """The replication slot on the primary that keeps WAL for standby ``node``."""
    return f"shadowshift_{node.replace('-', '_')}"


class AwsAgentPlatform(AwsPlatform):
    """:class:`AwsPlatform` whose shadow instance runs the node agent, which copies the
    standby (see the module docstring)."""

    capabilities = dataclasses.replace(AwsPlatform.capabilities, agents=True)

    def provision_shadow(self, on_progress: ProgressCallback | None = None) -> ShadowInfo:
        """``pulumi up`` of the shadow's instance (its user data starts the agent); then the
        copy for that agent, until the standby streams."""
        info = super().provision_shadow(on_progress)
        return dataclasses.replace(info, agent_task=self.seed_task())

    def seed_task(self) -> AgentTask | None:
        """The copy of the standby for its instance's agent (``None`` once it streams); the
        primary's slot for it exists when this returns."""
        spec, app = self.spec, self._app()
        # The factory builds this platform for a spec with an agent, whose section has the
        # postgres the application is built from.
        assert spec.agent is not None and spec.postgres is not None
        assert isinstance(app, PostgresApplication)
        primary = self._current_primary()
        standby = self._other(primary)
        if self.replication_between(primary, standby).state == "streaming":
            return None
        source = app.endpoint(self.directory.address(primary))
        target = app.endpoint(self.directory.address(standby))
        slot = slot_name(standby)
        ensure_slot(source.conninfo(), slot)
        return AgentTask(standby, seed=SeedRequest(
            VERSION, ServerRef(spec.instance_id, standby, target.port),
            PrimarySource(source.host, source.port, slot=slot, user=spec.postgres.user)),
            pickup_s=float(spec.agent.boot_s))
