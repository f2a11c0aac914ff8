"""Set-up of a local primary for hardened replication: a SCRAM role and TLS-only ``pg_hba``.

This is what an operator (or a test, or the demo) does once to the server they protect; the
platform then only connects. Both servers of a pair share the result: a copy and a rewind
carry ``pg_hba.conf`` and the role along, so after a cutover the former primary replicates
from the new one under the same rules. The hosts lab uses the role functions too (its agents
write the access rules themselves: ``activities.agent_security``).
"""

from __future__ import annotations

import re

from psycopg import sql

from infra.errors import InvalidRequestError
from infra.local.postgres import PgEndpoint, PgServer

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
HBA_MARK = "# shadowshift: replication over TLS with scram-sha-256 only"
"""First line of the rules :func:`require_tls_scram_replication` adds."""


def create_replication_role(server: PgServer | PgEndpoint, role: str, password: str) -> None:
    """Create ``role`` (or reset its password) with ``REPLICATION LOGIN`` on ``server`` (a
    local server, or the superuser endpoint of one elsewhere).

    The SCRAM-SHA-256 verifier is computed here (libpq's ``PQencryptPasswordConn``): the
    plaintext never reaches the server, so neither its log nor ``pg_stat_statements`` can
    show it.

    Raises:
        InvalidRequestError: a role name that would need quoting.
    """
    _check_role(role)
    endpoint = server.endpoint if isinstance(server, PgServer) else server
    with endpoint.connect() as conn:
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(),
                                                b"scram-sha-256").decode()
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} WITH REPLICATION LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier)))


REWIND_GRANTS = (
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO {}",
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO {}",
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO {}",
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)"
    " TO {}",
    "GRANT pg_checkpoint TO {}",
)
"""What a role other than a superuser needs for ``pg_rewind --source-server`` (PostgreSQL's
documentation of pg_rewind) and for the checkpoint an agent asks of a new primary first."""


def grant_rewind_rights(endpoint: PgEndpoint, role: str) -> None:
    """Let ``role`` be the source login of ``pg_rewind`` (idempotent): rejoining a former
    primary then needs no superuser password on the network.

    Raises:
        InvalidRequestError: a role name that would need quoting.
    """
    _check_role(role)
    with endpoint.connect() as conn:
        for grant in REWIND_GRANTS:
            conn.execute(sql.SQL(grant).format(sql.Identifier(role)))


def require_tls_scram_replication(server: PgServer, role: str) -> None:
    """Let replication connections in only as ``role``, over TLS, with SCRAM-SHA-256, and
    refuse every other replication connection (idempotent; reloads the server).

    The rules go first in ``pg_hba.conf``, since the first matching line decides.
    """
    _check_role(role)
    hba = server.data_dir / "pg_hba.conf"
    text = hba.read_text()
    if HBA_MARK not in text:
        rules = "\n".join([
            HBA_MARK,
            f"hostssl replication {role} 127.0.0.1/32 scram-sha-256",
            "host replication all 0.0.0.0/0 reject",
            "host replication all ::/0 reject",
        ])
        hba.write_text(rules + "\n" + text)
    with server.endpoint.connect() as conn:
        conn.execute("SELECT pg_reload_conf()")


def _check_role(role: str) -> None:
    if not _ROLE.match(role):
        raise InvalidRequestError(
            f"replication role {role!r}: use a-z, 0-9 and '_' (starting with a letter or '_')"
        )
