"""The local platform's certificates: made once, reused, chained to the local CA, naming
loopback, keys private to the servers' user."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from infra.errors import InvalidRequestError
from infra.local.pki import LocalPki


def test_certificates_are_made_once_and_chain_to_the_ca(tmp_path: Path) -> None:
    """A second call returns the same files untouched; the server certificate is signed by
    the CA and names 127.0.0.1; its key is 0600."""
    pki = LocalPki.of(tmp_path)
    first = pki.server_cert("db-one")
    before = first.cert.read_bytes(), first.key.read_bytes(), pki.ca_file.read_bytes()
    again = pki.server_cert("db-one")
    assert (again.cert.read_bytes(), again.key.read_bytes(), pki.ca_file.read_bytes()) == before
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate(first.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((pki.folder / "ca.key").stat().st_mode) == 0o600


def test_a_node_name_that_could_escape_the_folder_is_refused(tmp_path: Path) -> None:
    """Node names become file names."""
    with pytest.raises(InvalidRequestError):
        LocalPki.of(tmp_path).server_cert("../etc/passwd")
