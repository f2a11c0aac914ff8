"""The local platform's certificates: a small CA and one server certificate per node.

Generated on first use into ``<state_dir>/pki`` and reused afterwards (idempotent: nothing is
rewritten while the files are there and valid). Every server certificate names ``127.0.0.1``
and ``localhost``, where local servers listen, so a standby's ``sslmode=verify-full``
connection checks both the chain and the name. An operator who wants their own CA puts its
``ca.crt`` and ``ca.key`` in that folder before the first server certificate is made.

Layout: ``ca.crt`` (0644), ``ca.key`` (0600, ours), ``<node>.crt`` (0644) and ``<node>.key``
(0600, owned by the servers' OS user, as PostgreSQL requires of ``ssl_key_file``).
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.certificates import alternative_names
from infra.errors import InvalidRequestError
from infra.files import write_whole
from infra.local.postgres import give_to_server_user

CA_DAYS = 3650
"""Validity of the local CA."""
SERVER_DAYS = 825
"""Validity of a server certificate (renewed when less than :data:`RENEW_DAYS` remain)."""
RENEW_DAYS = 30
"""A server certificate closer than this to its end is issued again."""
_NODE = re.compile(r"^[a-z][a-z0-9-]{0,62}\Z")


@dataclass(frozen=True)
class ServerCert:
    """Where one node's certificate and key are."""

    cert: Path
    """PEM certificate, signed by the local CA."""
    key: Path
    """PEM private key, 0600, owned by the servers' OS user."""

    def settings(self) -> dict[str, str]:
        """``postgresql.conf`` lines (quoted values) that make a server offer TLS with it."""
        return {"ssl": "on", "ssl_cert_file": f"'{self.cert}'", "ssl_key_file": f"'{self.key}'"}


class LocalPki:
    """The CA and server certificates of one state directory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def of(cls, state_dir: Path) -> LocalPki:
        """The PKI of a local platform's state directory."""
        return cls(state_dir / "pki")

    @property
    def ca_file(self) -> Path:
        """The CA certificate a standby verifies servers with (``sslrootcert``)."""
        return self.folder / "ca.crt"

    def ensure_ca(self) -> None:
        """Create the CA unless it exists."""
        with self._locked():
            self._ensure_ca()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise writers (a worker and a set-up may issue at once: a key of one with the
        certificate of the other would not load)."""
        # Ours, not the servers' user's: it holds the CA key, which they must not replace.
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_ca(self) -> None:
        key_file = self.folder / "ca.key"
        if self.ca_file.exists() and key_file.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ShadowShift local CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        write_whole(key_file, _key_pem(key), 0o600)
        write_whole(self.ca_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def server_cert(self, node: str, addresses: tuple[str, ...] = ()) -> ServerCert:
        """The certificate of ``node`` (a validated instance or node name), issued if it is
        missing, ends within :data:`RENEW_DAYS` or does not name every one of ``addresses``
        (IP addresses it must name besides ``127.0.0.1``: a namespace host's address)."""
        if not _NODE.match(node):
            raise InvalidRequestError(f"invalid node name {node!r} for a certificate")
        wanted = tuple(ipaddress.ip_address(a) for a in addresses)
        with self._locked():
            return self._server_cert(node, wanted)

    def _server_cert(self, node: str,
                     addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
                     ) -> ServerCert:
        self._ensure_ca()
        found = ServerCert(self.folder / f"{node}.crt", self.folder / f"{node}.key")
        if found.key.exists() and _valid_for(found.cert, RENEW_DAYS, addresses):
            return found
        ca_key = serialization.load_pem_private_key((self.folder / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.folder / 'ca.key'} is not an EC key")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
                *(x509.IPAddress(a) for a in addresses)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_whole(found.key, _key_pem(key), 0o600)
        give_to_server_user(found.key)
        write_whole(found.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return found


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _valid_for(cert_file: Path, days: int,
               addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (),
               ) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return False
    return (cert.not_valid_after_utc - _now() > datetime.timedelta(days=days)
            and set(alternative_names(cert)).issuperset(str(a) for a in addresses))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


