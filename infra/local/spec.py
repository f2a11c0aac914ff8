"""What a local shadow is made of: the validated description of one protected PostgreSQL.

Two nodes carry fixed names, ports and homes: the original primary (named after the instance)
and the shadow (``<id>-shadow``). Cutovers swap their roles: ``serving_node`` says which one is
the primary now, and the role properties (``primary``, ``standby_node``, ``standby_home``...)
follow it, so the shadow program, replication status and sync settings always describe the
standby of the current roles. Name-based lookups (``endpoint_of``, ``home_of``) never move.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from contracts.shadow import PlatformRequest
from infra.errors import InvalidRequestError
from infra.local.pki import LocalPki, ServerCert
from infra.local.postgres import PgEndpoint
from infra.names import validate_instance_id
from infra.pg_security import SSLMODES, STANDBY_PASSFILE, ReplicationSecurity

COMPRESSIONS = ("lz4", "gzip", "none")


@dataclass(frozen=True, kw_only=True)
class LocalShadowSpec:
    """One protected PostgreSQL instance on the local platform and its shadow."""

    instance_id: str
    """Validated id; names the stack, the shadow's folder and its router entry."""
    primary_port: int
    """Port of the protected primary on 127.0.0.1."""
    shadow_port: int
    """Port the shadow listens on."""
    router_port: int
    """HAProxy frontend port clients use for this service."""
    state_dir: Path
    """Root of the local platform's files (shadows, HAProxy, archives)."""
    tier: int = 2
    """1 synchronous, 2 asynchronous streaming, 3 WAL archive shipping."""
    superuser: str = "postgres"
    """Role used for slots and settings on the primary."""
    replication_user: str = "postgres"
    """Role the shadow replicates as; needs the REPLICATION attribute."""
    compression: str = "lz4"
    """Server-side compression of the initial full copy."""
    archive_interval_s: int = 10
    """Tier 3: longest time before a WAL segment is shipped."""
    sync_degrade_after_s: float = 10.0
    """Tier 1: how long writes may wait for a lost shadow before relaxing to async."""
    serving_node: str = ""
    """Node that is the primary now (empty: the original primary). Every cutover swaps the
    roles while the node names, ports and homes stay; see :attr:`current_primary`."""
    original_home: str = ""
    """Folder holding the original primary's ``data`` directory, needed once it is the standby
    (rewound or re-seeded); empty: ``instances/<id>/original`` under the state dir."""
    replication_sslmode: str = "disable"
    """``verify-full``: the standby streams over TLS and checks the primary's certificate
    against the CA in ``<state_dir>/pki`` (both nodes then serve TLS with certificates issued
    there); ``disable``: plaintext."""
    passfile: Path | None = None
    """The worker's libpq passfile with the replication role's password (``None``: none);
    each node gets a copy of that role's lines in its home (see :mod:`infra.pg_security`)."""

    def __post_init__(self) -> None:
        # The spec's values were validated with the protection spec (contracts.spec); what
        # is checked here is what becomes a path or a process argument, and the roles.
        validate_instance_id(self.instance_id)
        if self.compression not in COMPRESSIONS:
            raise InvalidRequestError(
                f"compression {self.compression!r} is not one of {COMPRESSIONS}"
            )
        if not 1 <= self.archive_interval_s <= 3600:
            raise InvalidRequestError("archive_interval_s must be within 1..3600")
        if self.replication_sslmode not in SSLMODES:
            raise InvalidRequestError(
                f"replication_sslmode {self.replication_sslmode!r} is not one of {SSLMODES}"
            )
        if self.serving_node not in ("", self.primary_node, self.shadow_node):
            raise InvalidRequestError(
                f"serving_node {self.serving_node!r} is not one of "
                f"{self.primary_node!r}, {self.shadow_node!r}"
            )

    @classmethod
    def from_request(
        cls, request: PlatformRequest, state_dir: Path,
        security: ReplicationSecurity | None = None,
    ) -> LocalShadowSpec:
        """The local view of a protection request (ports and tier from its spec, the roles
        from the request, TLS and password from the worker's ``security``)."""
        spec = request.spec
        security = security or ReplicationSecurity()
        return cls(instance_id=spec.instance_id, primary_port=spec.primary_port,
                   shadow_port=spec.shadow_port, router_port=spec.router_port,
                   state_dir=state_dir, tier=spec.tier,
                   archive_interval_s=spec.archive_interval_s,
                   replication_user=spec.replication_user,
                   serving_node=request.serving_node, original_home=request.original_home,
                   replication_sslmode=security.sslmode, passfile=security.passfile)

    @property
    def stack_name(self) -> str:
        """Pulumi stack of this instance's shadow."""
        return f"shadow-{self.instance_id}"

    @property
    def primary_node(self) -> str:
        """Router name of the original primary."""
        return self.instance_id

    @property
    def shadow_node(self) -> str:
        """Router name (and ``application_name``) of the shadow."""
        return f"{self.instance_id}-shadow"

    def other_node(self, node: str) -> str:
        """The node of the pair that is not ``node``."""
        return self.shadow_node if node == self.primary_node else self.primary_node

    @property
    def slot_name(self) -> str:
        """Replication slot that keeps WAL for the shadow node (tiers 1 and 2)."""
        return f"shadowshift_{self.instance_id.replace('-', '_')}"

    def slot_for(self, node: str) -> str:
        """Slot on the primary that keeps WAL for standby ``node``."""
        return self.slot_name if node == self.shadow_node else f"{self.slot_name}_primary"

    @property
    def shadow_home(self) -> Path:
        """Folder of the shadow node's data directory and log."""
        return self.state_dir / "instances" / self.instance_id / "shadow"

    @property
    def archive_dir(self) -> Path:
        """Tier 3 WAL archive."""
        return self.state_dir / "instances" / self.instance_id / "wal-archive"

    @property
    def haproxy_dir(self) -> Path:
        """The local platform's HAProxy folder (one HAProxy per state dir)."""
        return self.state_dir / "haproxy"

    # -- nodes by name (fixed) -------------------------------------------------------------

    def port_of(self, node: str) -> int:
        """Port of ``node``."""
        return self.shadow_port if self._check(node) == self.shadow_node else self.primary_port

    def home_of(self, node: str) -> Path:
        """Folder of ``node``'s data directory (the original's only as far as it is known)."""
        if self._check(node) == self.shadow_node:
            return self.shadow_home
        if self.original_home:
            return Path(self.original_home)
        return self.state_dir / "instances" / self.instance_id / "original"

    def endpoint_of(self, node: str, user: str | None = None) -> PgEndpoint:
        """Endpoint of ``node`` (superuser unless ``user`` is given)."""
        return PgEndpoint(port=self.port_of(node), user=user or self.superuser)

    # -- roles (follow the cutovers) -------------------------------------------------------

    @property
    def current_primary(self) -> str:
        """Node that is the primary now."""
        return self.serving_node or self.primary_node

    @property
    def standby_node(self) -> str:
        """Node that is (or is to become) the standby: the shadow of the current primary."""
        return self.other_node(self.current_primary)

    @property
    def roles(self) -> str:
        """``<primary>><standby>`` now: the ``roles`` input of every shadow resource, whose
        providers update in place when only it changed (see :mod:`infra.local.program`)."""
        return f"{self.current_primary}>{self.standby_node}"

    @property
    def standby_port(self) -> int:
        """Port of the standby node."""
        return self.port_of(self.standby_node)

    @property
    def standby_home(self) -> Path:
        """Folder of the standby node's data directory."""
        return self.home_of(self.standby_node)

    @property
    def standby_slot(self) -> str:
        """Slot on the current primary for the standby node."""
        return self.slot_for(self.standby_node)

    @property
    def primary(self) -> PgEndpoint:
        """Superuser endpoint of the current primary."""
        return self.endpoint_of(self.current_primary)

    @property
    def shadow(self) -> PgEndpoint:
        """Superuser endpoint of the current standby."""
        return self.endpoint_of(self.standby_node)

    # -- replication security --------------------------------------------------------------

    @property
    def pki(self) -> LocalPki:
        """The state dir's CA and server certificates."""
        return LocalPki.of(self.state_dir)

    def passfile_copy(self, node: str) -> Path:
        """Where ``node``'s server processes read the replication password from."""
        return self.home_of(node) / STANDBY_PASSFILE

    def replication_conninfo(self, standby: str, *, passfile: Path | None = None) -> str:
        """How ``standby`` connects to the other node for replication: the replication role,
        TLS per :attr:`replication_sslmode`, the password from ``standby``'s passfile copy
        (``passfile``: another one, e.g. the worker's own for a preflight login). Never a
        password itself: this string lands in Pulumi state and ``postgresql.auto.conf``."""
        extra: dict[str, str] = {"sslmode": self.replication_sslmode}
        if self.replication_sslmode != "disable":
            extra["sslrootcert"] = str(self.pki.ca_file)
        if passfile is not None or self.passfile is not None:
            extra["passfile"] = str(passfile or self.passfile_copy(standby))
        source = self.endpoint_of(self.other_node(standby), self.replication_user)
        # dbname "replication", as the WAL receiver and pg_basebackup use for a physical
        # stream whatever the string says: passfile lines then match the same way for all.
        return dataclasses.replace(source, dbname="replication").conninfo(**extra)

    def server_cert(self, node: str) -> ServerCert:
        """Where ``node``'s TLS certificate and key are (issued by :meth:`LocalPki.server_cert`)."""
        return ServerCert(self.pki.folder / f"{node}.crt", self.pki.folder / f"{node}.key")

    def server_settings(self, node: str) -> dict[str, str]:
        """Settings ``node`` runs with as a standby besides replication: TLS on with its own
        certificate, so it can be the primary a later standby verifies."""
        return self.server_cert(node).settings() if self.replication_sslmode != "disable" else {}

    def _check(self, node: str) -> str:
        if node not in (self.primary_node, self.shadow_node):
            raise InvalidRequestError(f"unknown node {node!r} of {self.instance_id}")
        return node
