"""Certificates and keys for a loopback control plane.

A real API server insists on TLS and on a client CA; a throwaway cluster gets a throwaway CA.
Everything is made in-process with ``cryptography`` (no ``openssl`` binary), elliptic-curve
keys for speed, valid for a day: the cluster lives as long as a test session or a benchmark.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
"""ClusterIPs of Services; its first address is the ``kubernetes`` Service's."""
KUBERNETES_SERVICE_IP = "10.96.0.1"


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its private key on disk."""

    cert: Path
    """PEM certificate."""
    key: Path
    """PEM private key (mode 0600)."""


@dataclass(frozen=True)
class ClusterPki:
    """Everything the control plane's processes are started with."""

    ca: CertPair
    """Signs the serving certificate and every client certificate; the clients trust it."""
    apiserver: CertPair
    """The API server's serving certificate (loopback addresses and the in-cluster names)."""
    admin: CertPair
    """A client certificate in ``system:masters``: the control plane's components, KWOK,
    tests and Pulumi all use it (one identity is enough on a throwaway loopback cluster)."""
    service_account_key: Path
    """RSA private key with which the API server signs service-account tokens."""
    service_account_pub: Path
    """Its public half, with which the API server verifies those tokens."""


def make_cluster_pki(directory: Path) -> ClusterPki:
    """Write a fresh CA, serving and admin certificates and a service-account key pair into
    ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("shadowshift-loopback-ca")
    ca_cert = _builder(ca_name, ca_name, ca_key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    ).add_extension(
        x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                      content_commitment=False, key_encipherment=False,
                      data_encipherment=False, key_agreement=False,
                      encipher_only=False, decipher_only=False),
        critical=True,
    ).sign(ca_key, hashes.SHA256())
    ca = _write(directory / "ca", ca_cert, ca_key)

    names: list[x509.GeneralName] = [
        x509.DNSName(dns) for dns in (
            "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    names += [x509.IPAddress(ipaddress.ip_address(ip))
              for ip in ("127.0.0.1", KUBERNETES_SERVICE_IP)]
    apiserver = _leaf(directory / "apiserver", ca_cert, ca_key, _name("kube-apiserver"),
                      ExtendedKeyUsageOID.SERVER_AUTH, names)
    admin = _leaf(directory / "admin", ca_cert, ca_key,
                  _name("shadowshift-admin", organization="system:masters"),
                  ExtendedKeyUsageOID.CLIENT_AUTH, [])

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private, sa_public = directory / "sa.key", directory / "sa.pub"
    _write_private(sa_private, sa_key)
    sa_public.write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ))
    return ClusterPki(ca=ca, apiserver=apiserver, admin=admin,
                      service_account_key=sa_private, service_account_pub=sa_public)


def issue_client_cert(ca: CertPair, stem: Path, user: str) -> CertPair:
    """A client certificate for ``user`` (no group) signed by ``ca``: an identity that has
    only the rights RBAC binds to that user name."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not the EC key this module writes")
    return _leaf(stem, ca_cert, ca_key, _name(user), ExtendedKeyUsageOID.CLIENT_AUTH, [])


def _name(common_name: str, *, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name,
             public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # A minute of slack: the clock of whoever checks may be a little behind ours.
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + VALIDITY)
    )


def _leaf(stem: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
          subject: x509.Name, usage: x509.ObjectIdentifier,
          names: list[x509.GeneralName]) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(subject, ca_cert.subject, key.public_key()).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(stem, builder.sign(ca_key, hashes.SHA256()), key)


def _write(stem: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertPair:
    pair = CertPair(cert=stem.with_suffix(".crt"), key=stem.with_suffix(".key"))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pair.key, key)
    return pair


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
