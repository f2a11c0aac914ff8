"""What every TLS check of ShadowShift asks of an X.509 certificate: the names it holds, whether
it is valid now, whether a private key is its own. One place for the checks of the Temporal
client's files (:mod:`workers.temporal_tls`), the agents' PostgreSQL files (:mod:`infra.pg_tls`)
and the local CA (:mod:`infra.local.pki`)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def alternative_names(cert: x509.Certificate) -> list[str]:
    """The DNS names, then the IP addresses, its subject alternative names hold."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    addresses = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return list(san.get_values_for_type(x509.DNSName)) + addresses


def validity_problem(cert: x509.Certificate, now: datetime.datetime) -> str | None:
    """Why ``cert`` is not valid at ``now`` (a phrase to follow its name), else ``None``."""
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < before:
        return f"is not valid before {before:%Y-%m-%d %H:%M} UTC (check this host's clock)"
    if now > after:
        return f"expired on {after:%Y-%m-%d %H:%M} UTC"
    return None


def key_matches(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """Whether ``key`` is the private key of ``cert``."""
    def der(public: object) -> bytes:
        return public.public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der(key.public_key()) == der(cert.public_key())
