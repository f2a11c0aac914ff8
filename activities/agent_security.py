"""How an agent's servers secure replication between hosts: TLS with the host's own
certificate, ``sslmode=verify-full`` against the agent's CA, SCRAM with the password from a
passfile on the host.

What an agent with TLS files (``AgentConfig.pg_tls``) does to each of its servers:

- **serves TLS** with the host's certificate (``ssl = on``), so whichever node is the primary,
  before or after a cutover, a standby can verify it;
- **accepts replication from the network only over TLS with SCRAM-SHA-256** (and rejects
  every other replication connection that is not from the host itself); other roles than
  the control worker's ``postgres`` need TLS and SCRAM for SQL sessions too, ``pg_rewind``'s
  included (``pg_hba.conf`` rows: :func:`hba_rows`);
- **streams with** ``sslmode=verify-full`` (the primary's certificate must chain to the CA
  and name the address connected to) and the password read by libpq from a passfile.

The files a server reads live in its home, never in its data directory (a copy or a rewind
must not carry them to another host): ``server.crt`` and ``root.crt`` (0644), ``server.key``
and ``replication.pgpass`` (the replication role's lines only; both 0600 and owned by the
server's OS user, as PostgreSQL and libpq require). :func:`install_credentials` rewrites them
at every ``ensure_primary``, seed and rewind, so rotated files reach a server at its next
task. Only paths ever leave the host; the password is read by libpq alone.
"""

from __future__ import annotations

from pathlib import Path

from psycopg import pq

from activities.agent_server import AgentConfig, ManagedServer
from contracts.agent import PrimarySource
from infra.errors import InfraError, InvalidRequestError
from infra.files import write_whole
from infra.local.postgres import PgEndpoint, prepare_dir, server_os_user
from infra.pg_security import STANDBY_PASSFILE, check_passfile, install_passfile

SERVER_CERT, SERVER_KEY, ROOT_CERT = "server.crt", "server.key", "root.crt"
"""Names of a server's TLS files in its home."""
LOGIN_TIMEOUT_S = 5
"""``connect_timeout`` of the replication login check."""
REFUSALS = ("password authentication failed", "pg_hba.conf", "server does not support SSL",
            "certificate", "does not exist", "not permitted to log in", "no password supplied",
            "must have replication", "permission denied")
"""Words of libpq's and the server's refusals that no retry fixes (anything else, such as a
refused TCP connection while the primary restarts, is retried)."""


def conf_quoted(value: str) -> str:
    """``value`` as a quoted ``postgresql.conf`` string."""
    return "'" + value.replace("'", "''") + "'"


def sslmode(config: AgentConfig) -> str:
    """How this agent's standbys connect: ``verify-full`` with TLS files, else ``disable``."""
    return "verify-full" if config.pg_tls is not None else "disable"


def install_credentials(server: ManagedServer, user: str | None) -> bool:
    """Copy the host's TLS files into ``server``'s home and, for replication role ``user``
    (``None``: a primary that streams from nobody), the passfile's lines for that role;
    returns whether a TLS file changed (a running server then needs a reload).

    Raises:
        InvalidRequestError: the passfile is unusable (named, never a line of it).
    """
    config = server.config
    home = prepare_dir(server.home, mode=0o755)
    changed = False
    if config.pg_tls is not None:
        for source, name, mode in ((config.pg_tls.cert, SERVER_CERT, 0o644),
                                   (config.pg_tls.key, SERVER_KEY, 0o600),
                                   (config.pg_tls.ca, ROOT_CERT, 0o644)):
            changed = _copy(source, home / name, mode) or changed
    if config.passfile is not None and user is not None:
        try:
            install_passfile(config.passfile, home / STANDBY_PASSFILE, user, server_os_user())
        except InvalidRequestError as err:
            raise InvalidRequestError(f"the agent of {config.host}: {err}") from None
    return changed


def server_tls_settings(server: ManagedServer) -> dict[str, str]:
    """``postgresql.conf`` lines (quoted values) that make ``server`` serve TLS with the
    host's certificate; none without TLS files."""
    if server.config.pg_tls is None:
        return {}
    return {"ssl": "on", "ssl_cert_file": conf_quoted(str(server.home / SERVER_CERT)),
            "ssl_key_file": conf_quoted(str(server.home / SERVER_KEY))}


def source_conninfo(server: ManagedServer, source: PrimarySource, *, replication: bool,
                    **extra: str) -> str:
    """How ``server`` reaches ``source`` as the replication role, with the copies in its
    home: ``replication``: a physical stream (``pg_basebackup``, the WAL receiver; database
    ``replication``, as libpq matches passfile lines for them), else a SQL session
    (``pg_rewind``, the slot, the checkpoint). Never a password: it lands in
    ``postgresql.auto.conf``."""
    return _conninfo(server.config, source, replication=replication,
                     ca=server.home / ROOT_CERT,
                     passfile=server.home / STANDBY_PASSFILE, **extra)


def check_stream_from(config: AgentConfig, source: PrimarySource) -> None:
    """Open (and close) a replication connection to ``source`` as this host's standbys
    would, with the operator's files (nothing is created): a wrong or missing password, a
    primary without TLS, an untrusted or misnamed certificate, a role without the right is
    refused here, naming the host and the setting, instead of in a copy that retries.

    Raises:
        InvalidRequestError: refused (libpq's reason; never the password).
        InfraError: not reached (retryable: a primary restarting, a partition).
    """
    where = f"the agent of {config.host}"
    if config.passfile is not None:
        try:
            check_passfile(config.passfile, source.user)
        except InvalidRequestError as err:
            raise InvalidRequestError(f"{where}: {err}") from None
    conninfo = _conninfo(config, source, replication=True,
                         ca=config.pg_tls.ca if config.pg_tls is not None else None,
                         passfile=config.passfile)
    login = pq.PGconn.connect(
        f"{conninfo} replication=true connect_timeout={LOGIN_TIMEOUT_S}".encode())
    try:
        if login.status == pq.ConnStatus.OK:
            return
        reason = " ".join(login.get_error_message().split()) or "refused"
    finally:
        login.finish()
    message = (f"{where} cannot open a replication connection to {source.address}:"
               f"{source.port} as role {source.user!r} (sslmode={sslmode(config)}): {reason}")
    if any(word in reason for word in REFUSALS):
        raise InvalidRequestError(message)
    raise InfraError(message)


def hba_rows(config: AgentConfig) -> list[tuple[str, str, str, str, str]]:
    """``pg_hba.conf`` rows ``(type, database, user, address, method)`` of the agent's block:
    everything from the host itself is trusted (the agent's own socket, its tools); from the
    peers' network, without TLS files everything is trusted too (a test world's setting),
    with them replication needs TLS and SCRAM and anything else is rejected, and SQL
    sessions other than the control worker's ``postgres`` need TLS and SCRAM as well."""
    cidr = config.effective_cidr
    local = [("local", "all", "all", "", "trust"), ("local", "replication", "all", "", "trust"),
             ("host", "all", "all", "127.0.0.1/32", "trust"),
             ("host", "replication", "all", "127.0.0.1/32", "trust")]
    if config.pg_tls is None:
        return [*local, ("host", "all", "all", cidr, "trust"),
                ("host", "replication", "all", cidr, "trust")]
    return [
        *local,
        ("hostssl", "replication", "all", cidr, "scram-sha-256"),
        ("host", "replication", "all", "0.0.0.0/0", "reject"),
        ("host", "replication", "all", "::/0", "reject"),
        # The control worker's SQL (promotion, fencing, slots) and the router's clients:
        # still by address (docs/security.md says what that leaves open).
        ("host", "all", "postgres", cidr, "trust"),
        ("hostssl", "all", "all", cidr, "scram-sha-256"),
    ]


def _conninfo(config: AgentConfig, source: PrimarySource, *, replication: bool,
              ca: Path | None, passfile: Path | None, **extra: str) -> str:
    params: dict[str, str] = {"sslmode": sslmode(config), **extra}
    if config.pg_tls is not None and ca is not None:
        params["sslrootcert"] = str(ca)
    if config.passfile is not None and passfile is not None:
        params["passfile"] = str(passfile)
    endpoint = PgEndpoint(host=source.address, port=source.port, user=source.user,
                          dbname="replication" if replication else "postgres")
    return endpoint.conninfo(**params)


def _copy(source: Path, target: Path, mode: int) -> bool:
    """Copy ``source`` to ``target`` whole (mode ``mode``, the server's OS user's), unless
    it already holds the same bytes; whether it wrote."""
    data = source.read_bytes()
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_whole(target, data, mode, owner=server_os_user())
    return True

