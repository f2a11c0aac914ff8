"""A node agent's PostgreSQL TLS files are checked before it serves: all three settings or
none, a certificate issued by the CA, naming the host's address, with its own key. Each
refusal names the variable to change."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from infra.certificates import alternative_names
from infra.errors import InvalidRequestError
from infra.local.pki import LocalPki
from infra.pg_tls import PgTlsFiles, check_server_tls, tls_files

ADDRESS = "198.18.7.10"


def _issued(folder: Path, node: str = "host-a", address: str = ADDRESS) -> PgTlsFiles:
    pki = LocalPki(folder)
    cert = pki.server_cert(node, (address,))
    return PgTlsFiles(pki.ca_file, cert.cert, cert.key)


def test_a_certificate_from_the_ca_naming_the_address_passes(tmp_path: Path) -> None:
    """What set-up issues for a host is accepted, and it names the host's address besides
    the loopback ones."""
    files = _issued(tmp_path / "pki")
    check_server_tls(files, ADDRESS)
    names = alternative_names(x509.load_pem_x509_certificate(files.cert.read_bytes()))
    assert ADDRESS in names and "127.0.0.1" in names


def test_some_but_not_all_settings_are_refused_by_name(tmp_path: Path) -> None:
    """Two of the three set: the missing one is named; none set: no TLS."""
    assert tls_files(None, None, None) is None
    with pytest.raises(InvalidRequestError, match="SHADOWSHIFT_PG_TLS_KEY unset"):
        tls_files(tmp_path / "ca.crt", tmp_path / "server.crt", None)


def test_a_certificate_for_another_address_is_refused(tmp_path: Path) -> None:
    """A standby verifying the name would refuse it, so the agent does first."""
    files = _issued(tmp_path / "pki", address="198.18.7.11")
    with pytest.raises(InvalidRequestError,
                       match=r"SHADOWSHIFT_PG_TLS_CERT.*not this host's address 198\.18\.7\.10"):
        check_server_tls(files, ADDRESS)


def test_a_certificate_of_another_ca_is_refused(tmp_path: Path) -> None:
    """Issued by a CA other than the one in SHADOWSHIFT_PG_TLS_CA."""
    ours, theirs = _issued(tmp_path / "ours"), _issued(tmp_path / "theirs")
    with pytest.raises(InvalidRequestError, match="is not issued by the CA"):
        check_server_tls(PgTlsFiles(ours.ca, theirs.cert, theirs.key), ADDRESS)


def test_the_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    """A key that does not match the certificate would stop the server from starting."""
    files = _issued(tmp_path / "pki")
    other = LocalPki(tmp_path / "pki").server_cert("host-b", (ADDRESS,))
    with pytest.raises(InvalidRequestError, match=r"SHADOWSHIFT_PG_TLS_KEY.*not the key"):
        check_server_tls(PgTlsFiles(files.ca, files.cert, other.key), ADDRESS)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """An unreadable path says which setting points at it."""
    files = _issued(tmp_path / "pki")
    with pytest.raises(InvalidRequestError, match=r"SHADOWSHIFT_PG_TLS_CA.*cannot be read"):
        check_server_tls(PgTlsFiles(tmp_path / "nope.crt", files.cert, files.key), ADDRESS)
