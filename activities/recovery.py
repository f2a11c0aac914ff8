"""Recovery of a former primary after a cutover: rejoin it as the new shadow, or retire it.

The protection workflow calls these with a request that already carries the new roles
(``ShadowRequest.serving_node`` = the node that serves now), so the shadow stack's update
follows the cutover in place instead of reverting it (see ``infra.local.program``).

- ``inspect_node``: what a node's data directory is and whether ``pg_rewind`` could rewind
  it (``wal_log_hints`` or data checksums); read-only, with advice when it could not.
- ``rejoin_former_primary_as_shadow``: rewind the former primary, make it stream from the
  new primary (synchronously in tier 1), then record the roles in the stack (``pulumi up``,
  in place: nothing is copied, the primary is not touched). Refuses, non-retryably, a former
  primary whose data directory is gone or damaged, or that cannot be rewound.
- ``retire_former_primary``: record the roles, then ``pulumi destroy`` what is now the
  standby side (the former primary's process, data directory, slot, router entry). The
  workflow then provisions a fresh shadow with the ordinary ``provision_shadow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from temporalio import activity

from activities.errors import translated_errors
from activities.heartbeat import heartbeating
from activities.shadow import ShadowRequest
from infra.errors import InfraError, InvalidRequestError
from infra.factory import platform_for
from infra.local.platform import LocalPlatform
from infra.local.postgres import pg_bin, run_server_tool
from infra.local.program import shadow_program
from infra.local.spec import LocalShadowSpec
from infra.platform import Platform
from infra.pulumi_engine import StackDriver

HEARTBEAT_EVERY_S = 5.0
"""Beat interval of the rejoin and retire activities (the workflow allows 30 s of silence)."""

REWIND_ADVICE = (
    "set wal_log_hints = on (ALTER SYSTEM SET wal_log_hints = on, then restart the server) or "
    "initialise it with data checksums, so a former primary can be rewound instead of copied"
)


@dataclass
class InspectRequest:
    """Which node of a protected pair to look at."""

    shadow: ShadowRequest
    """The protected instance."""
    node: str
    """Node name (the original primary's instance id, or ``<id>-shadow``)."""


@dataclass
class NodeFacts:
    """What ``inspect_node`` found."""

    node: str
    """The node."""
    reachable: bool
    """Whether it answered SQL."""
    home: str
    """Folder holding its ``data`` directory ("" when it could not be learned)."""
    rewindable: bool | None
    """``wal_log_hints`` or data checksums are on (``None``: unknown, it did not answer)."""
    advice: str = ""
    """What to change, when it cannot be rewound."""


@dataclass
class RecoverRequest:
    """The former primary to recover, with the roles as they are after the cutover."""

    shadow: ShadowRequest
    """The protected instance; ``serving_node`` is the new primary."""
    former: str
    """The former primary, to become the new shadow."""


class RecoveryActivities:
    """Activities that bring a former primary back as the shadow, or retire it."""

    def __init__(self, driver: StackDriver, state_dir: Path) -> None:
        self._driver = driver
        self._state_dir = state_dir

    def platform(self, request: ShadowRequest) -> Platform:
        """The platform object for ``request`` (validates it)."""
        return platform_for(request, self._driver, self._state_dir)

    @activity.defn
    def inspect_node(self, request: InspectRequest) -> NodeFacts:
        """Data directory and rewind readiness of ``request.node``; changes nothing."""
        with translated_errors():
            platform = _local(self.platform(request.shadow))
            try:
                row = platform.sessions.run(
                    platform.endpoint(request.node),
                    "SELECT current_setting('data_directory'), current_setting('wal_log_hints'),"
                    " current_setting('data_checksums')",
                )
            except psycopg.Error:
                known = platform.spec.home_of(request.node)
                home = str(known) if (known / "data").exists() else ""
                return NodeFacts(request.node, False, home, None)
            finally:
                platform.close()
        data_dir, hints, checksums = row if row else ("", "off", "off")
        if Path(data_dir).name != "data":
            # Local servers are managed as <home>/data (PgServer); another layout is not
            # guessed at: such a node is re-seeded in a home of ours instead.
            return NodeFacts(request.node, True, "", False,
                             f"{request.node}: its data directory {data_dir} is not <home>/data")
        rewindable = "on" in (hints, checksums)
        advice = "" if rewindable else f"{request.node}: {REWIND_ADVICE}"
        return NodeFacts(request.node, True, str(Path(data_dir).parent), rewindable, advice)

    @activity.defn
    def rejoin_former_primary_as_shadow(self, request: RecoverRequest) -> str:
        """Rewind the former primary, make it stream, record the roles; returns what was done.

        Idempotent: a former primary that already streams from the new primary is only
        recorded. Raises ``InvalidRequest`` (not retried) when its data directory is missing
        or damaged, or it has neither ``wal_log_hints`` nor data checksums: retire it then.
        """
        with translated_errors():
            platform = _local(self.platform(request.shadow))
            try:
                spec = platform.spec
                _require_standby(spec, request.former)
                data_dir = spec.home_of(request.former) / "data"
                primary = spec.current_primary
                streaming = platform.replication_between(primary, request.former).state
                if streaming != "streaming":
                    _require_rewindable(request.former, data_dir)
                with heartbeating(f"rejoining {request.former}", HEARTBEAT_EVERY_S):
                    done = platform.rejoin(request.former, str(data_dir))
                    platform.provision_shadow()  # records the roles in the stack, in place
            finally:
                platform.close()
        activity.logger.info("%s rejoined as the shadow of %s: %s.", request.former, primary, done)
        return done

    @activity.defn
    def retire_former_primary(self, request: RecoverRequest) -> bool:
        """Record the roles in the stack, then ``pulumi destroy`` the former primary's side.

        Returns ``False`` when there was no stack left to destroy (a retry after the
        destroy finished). The serving primary is never touched: the stack describes the
        standby side of the roles in ``request``.
        """
        details = activity.info().heartbeat_details
        if details and details[0] == "destroyed":
            return False
        with translated_errors():
            platform = _local(self.platform(request.shadow))
            try:
                spec = platform.spec
                _require_standby(spec, request.former)
                with heartbeating(f"retiring {request.former}", HEARTBEAT_EVERY_S):
                    existed = self._driver.exists(spec.stack_name)
                    if existed:
                        self._driver.up(spec.stack_name, shadow_program(spec))
                    platform.destroy_shadow()
            finally:
                platform.close()
        activity.heartbeat("destroyed")
        activity.logger.warning(
            "%s retired through pulumi destroy; a fresh shadow follows.", request.former
        )
        return existed


def _local(platform: Platform) -> LocalPlatform:
    if not isinstance(platform, LocalPlatform):
        raise NotImplementedError(f"{platform.name} has no recovery of a former primary yet")
    return platform


def _require_standby(spec: LocalShadowSpec, former: str) -> None:
    """Refuse a request whose roles do not make ``former`` the standby."""
    if spec.standby_node != former:
        raise InvalidRequestError(
            f"{former} is not the standby of the roles given (serving_node {spec.current_primary})"
        )


def _require_rewindable(node: str, data_dir: Path) -> None:
    """Read the cluster's control file (works whether or not the server runs)."""
    try:
        control = run_server_tool([pg_bin("pg_controldata"), "-D", str(data_dir)])
    except InfraError as err:
        raise InvalidRequestError(
            f"the data directory of {node} ({data_dir}) is missing or damaged, so it cannot "
            f"rejoin: {str(err).splitlines()[0]}"
        ) from err
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in control.splitlines())
    )
    hints = fields.get("wal_log_hints setting") == "on"
    checksums = fields.get("Data page checksum version", "0") != "0"
    if not (hints or checksums):
        raise InvalidRequestError(f"{node} cannot be rewound: {REWIND_ADVICE}")
