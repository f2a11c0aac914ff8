"""The TLS files of a node agent's PostgreSQL servers, and the checks made before it serves.

On the hosts platform each host's agent is given three paths (``SHADOWSHIFT_PG_TLS_CA``,
``_CERT``, ``_KEY``): its servers serve TLS with the certificate, which must name the host's
address, and its standbys verify the primary they stream from against the CA
(``sslmode=verify-full``). After a cutover the former primary verifies the new one the same
way, since every host serves a certificate of its own. Set-up makes these files for the
lab, demo and test hosts (:mod:`workers.hosts_lab`); an operator supplies them elsewhere
(docs/security.md).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from infra.certificates import alternative_names, key_matches, validity_problem
from infra.errors import InvalidRequestError

CA_VAR, CERT_VAR, KEY_VAR = ("SHADOWSHIFT_PG_TLS_CA", "SHADOWSHIFT_PG_TLS_CERT",
                             "SHADOWSHIFT_PG_TLS_KEY")
"""The agent settings that name the files."""


@dataclass(frozen=True)
class PgTlsFiles:
    """Where one agent's TLS files are (the operator's, read by the agent; each server gets
    its own copies, see ``activities.agent_security``)."""

    ca: Path
    """PEM CA certificate(s) a standby accepts its primary's certificate from."""
    cert: Path
    """PEM server certificate of this host, issued by :attr:`ca`, naming its address."""
    key: Path
    """PEM private key of :attr:`cert`, unencrypted."""


def tls_files(ca: Path | None, cert: Path | None, key: Path | None) -> PgTlsFiles | None:
    """The three settings as one value: all three or none.

    Raises:
        InvalidRequestError: some but not all are set, naming the missing ones.
    """
    given = {CA_VAR: ca, CERT_VAR: cert, KEY_VAR: key}
    missing = [name for name, path in given.items() if path is None]
    if len(missing) == 3:
        return None
    if missing:
        raise InvalidRequestError(
            f"{', '.join(missing)} unset while {', '.join(n for n in given if n not in missing)}"
            " is set: give the CA, the host's certificate and its key, or none of them")
    assert ca is not None and cert is not None and key is not None
    return PgTlsFiles(ca, cert, key)


def check_server_tls(files: PgTlsFiles, address: str) -> None:
    """Refuse files a server could not load or a standby would not accept: unreadable, not
    PEM, expired, not issued by the CA, not naming ``address``, or a key of another
    certificate. The messages name the setting.

    Raises:
        InvalidRequestError: what is wrong, naming the variable.
    """
    ca = _load_cert(CA_VAR, files.ca)
    cert = _load_cert(CERT_VAR, files.cert)
    problem = validity_problem(cert, datetime.datetime.now(datetime.UTC))
    if problem:
        raise InvalidRequestError(f"{CERT_VAR}: {files.cert} {problem}: issue a new one")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidRequestError(
            f"{CERT_VAR}: {files.cert} ({cert.subject.rfc4514_string()}) is not issued by the "
            f"CA in {CA_VAR} ({ca.subject.rfc4514_string()}): standbys would refuse it"
        ) from None
    names = alternative_names(cert)
    if address not in names:
        raise InvalidRequestError(
            f"{CERT_VAR}: {files.cert} names {', '.join(names) or 'nothing'}, not this host's "
            f"address {address}: a standby connecting with sslmode=verify-full would refuse it; "
            f"issue one with IP address {address} among its subject alternative names")
    try:
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except OSError as err:
        raise InvalidRequestError(f"{KEY_VAR}: {files.key} cannot be read: {err.strerror}") \
            from None
    except (ValueError, TypeError):
        raise InvalidRequestError(
            f"{KEY_VAR}: {files.key} is not an unencrypted PEM private key") from None
    if not key_matches(key, cert):
        raise InvalidRequestError(
            f"{KEY_VAR}: {files.key} is not the key of the certificate in {CERT_VAR}")


def _load_cert(var: str, path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as err:
        raise InvalidRequestError(f"{var}: {path} cannot be read: {err.strerror}") from None
    except ValueError:
        raise InvalidRequestError(f"{var}: {path} is not a PEM certificate") from None
