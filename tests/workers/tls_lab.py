"""A throwaway PKI and a TLS-terminating HAProxy in front of the dev server, for the TLS tests.

The ``temporal`` dev server speaks plaintext gRPC only (``temporal server start-dev`` has no TLS
options), so :class:`TlsProxy` puts the real HAProxy in front of it: ``mode tcp``, TLS
terminated with the lab's server certificate, ALPN ``h2``, and — in mutual mode — every client
certificate verified against the lab's CA (``verify required``). Certificates are made here with
``cryptography``; nothing is mocked.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.local.ports import free_port

ONE_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, written as PEM files (the key mode 0600)."""

    cert: Path
    """The certificate."""
    key: Path
    """Its private key."""

    def combined(self) -> Path:
        """Certificate then key in one file, as HAProxy's ``crt`` wants them."""
        path = self.cert.with_suffix(".combined.pem")
        path.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        path.chmod(0o600)
        return path


class CertificateAuthority:
    """A self-signed CA in ``folder`` that issues server and client certificates."""

    def __init__(self, folder: Path, name: str = "ShadowShift test CA") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - ONE_DAY).not_valid_after(_now() + 30 * ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))
        self.cert_file = folder / "ca.pem"
        self.cert_file.write_bytes(_pem(self.certificate))

    def issue(self, name: str, *, dns: Sequence[str] = (), ips: Sequence[str] = (),
              server: bool = False, not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None, file_name: str = "") -> Issued:
        """A certificate with common name ``name`` and the given subject alternative names,
        for TLS servers (``server``) or clients, valid from a day ago for 30 days unless
        ``not_before``/``not_after`` say otherwise; written to ``<file_name or name>.pem``
        and ``.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or _now() - ONE_DAY)
            .not_valid_after(not_after or _now() + 30 * ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        stem = file_name or name
        issued = Issued(self.folder / f"{stem}.pem", self.folder / f"{stem}.key")
        issued.cert.write_bytes(_pem(certificate))
        issued.key.write_bytes(_key_pem(key))
        issued.key.chmod(0o600)
        return issued


class TlsProxy:
    """HAProxy terminating TLS on ``127.0.0.1:<port>`` and forwarding plaintext to
    ``upstream`` (the dev server). ``verify_clients``: mutual TLS, a client certificate signed
    by ``client_ca`` is required; otherwise any client that trusts the server may connect."""

    def __init__(self, folder: Path, *, server: Issued, client_ca: Path, upstream: str,
                 verify_clients: bool = True) -> None:
        self.folder = folder
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        verify = "verify required" if verify_clients else "verify none"
        self.config_file = folder / f"haproxy-tls-{self.port}.cfg"
        self.config_file.write_text("\n".join([
            "global",
            "    maxconn 256",
            "defaults",
            "    mode tcp",
            "    timeout connect 2s",
            "    timeout client 1h",
            "    timeout server 1h",
            "frontend temporal_tls",
            f"    bind 127.0.0.1:{self.port} ssl crt {server.combined()} ca-file {client_ca}"
            f" {verify} alpn h2",
            "    default_backend temporal",
            "backend temporal",
            f"    server temporal {upstream}",
            "",
        ]))
        self.log_file = folder / f"haproxy-tls-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> TlsProxy:
        """Start HAProxy in the foreground of a child process; return once it accepts TLS."""
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(["haproxy", "-db", "-f", str(self.config_file)],
                                             stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while not self._listening():
            if self._process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log_file.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not listen on {self.address} in {timeout_s} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop HAProxy (idempotent)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def _listening(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


def handshake_refused(address: str, ca: Path, client: Issued | None) -> str | None:
    """The reason a plain TLS client (Python's ``ssl``) is refused by ``address``, or ``None``
    when the server accepts it. Used only to show a refusal is the proxy's, not ours."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            # TLS 1.3: the server judges the client's certificate after the client's handshake
            # ends; a refusal arrives as an alert on the first read.
            tls.settimeout(2)
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            tls.recv(1)
    except (ssl.SSLError, OSError) as err:
        return str(err)
    return None
