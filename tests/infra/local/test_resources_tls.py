"""Stack resources whose conninfo gains TLS parameters (a worker given
``SHADOWSHIFT_PG_TLS_CA`` after the stack was written) are updated in place, never replaced:
replacing the slot would drop it, replacing the tier's settings would reset them."""

from __future__ import annotations

from pathlib import Path

from infra.local.postgres import PgEndpoint
from infra.local.resources import (
    PrimarySettingsProvider,
    ReplicationSlotProvider,
    same_server,
)


def test_an_endpoint_with_a_ca_asks_for_verify_full_against_it() -> None:
    """``ca_file`` turns into ``sslmode=verify-full`` and ``sslrootcert``; none leaves both out."""
    plain = PgEndpoint(host="10.1.2.3", port=5432).conninfo()
    verified = PgEndpoint(host="10.1.2.3", port=5432, ca_file=Path("/pki/ca.crt")).conninfo()
    assert "sslmode" not in plain and "sslrootcert" not in plain
    assert "sslmode=verify-full" in verified and "sslrootcert=/pki/ca.crt" in verified
    assert same_server(plain, verified)
    assert not same_server(plain, PgEndpoint(host="10.1.2.4", port=5432).conninfo())
    assert not same_server(None, plain)


def test_a_tls_only_conninfo_change_updates_in_place() -> None:
    """Only TLS changed: an in-place update for the slot and the tier's settings; another
    server still replaces them."""
    old = PgEndpoint(host="10.1.2.3", port=5432).conninfo()
    new = PgEndpoint(host="10.1.2.3", port=5432, ca_file=Path("/pki/ca.crt")).conninfo()
    moved = PgEndpoint(host="10.1.2.9", port=5432, ca_file=Path("/pki/ca.crt")).conninfo()
    olds = {"conninfo": old, "slot": "s", "roles": "a>b"}
    for provider in (ReplicationSlotProvider(), PrimarySettingsProvider()):
        tls_only = provider.diff("id", olds, {**olds, "conninfo": new})
        assert tls_only.changes and not tls_only.replaces
        elsewhere = provider.diff("id", olds, {**olds, "conninfo": moved})
        assert elsewhere.changes and elsewhere.replaces == ["conninfo"]
