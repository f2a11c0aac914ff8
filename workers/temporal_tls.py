"""TLS to Temporal: the ``SHADOWSHIFT_TEMPORAL_TLS_*`` settings turned into the SDK's
:class:`~temporalio.service.TLSConfig`, checked when a process starts.

Every process that connects a Temporal client (worker, node agent, ``shadowshift`` CLI, health
check, task runner) passes ``tls=tls_config(settings)``:

- nothing set: ``False``, plaintext (a local dev server);
- ``SHADOWSHIFT_TEMPORAL_TLS_CA`` (and/or ``_SERVER_NAME``): server-authenticated TLS, the
  frontend's certificate verified against that CA (the system's CAs without it) and the name
  (the address's host unless ``_SERVER_NAME`` says otherwise);
- plus ``_CERT`` and ``_KEY``: mutual TLS, this process proves who it is with its certificate.

What can be checked before connecting is checked here, and every failure is a
:class:`TemporalTlsError` (a :class:`~workers.settings.SettingsError`) naming the variable and
what to change: a file that is missing, unreadable or not PEM; a certificate without its key
or a key without its certificate; a certificate expired or not yet valid; a key that does not
belong to the certificate; a client certificate not meant for TLS clients; a key readable by
others. Whether the server's certificate carries the expected name, and whether the server
accepts ours, only the handshake tells: :func:`tls_problem` turns those connect errors into
one sentence of the same kind.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.service import TLSConfig

from infra.certificates import alternative_names, key_matches, validity_problem
from workers.settings import PREFIX, Settings, SettingsError

CA_VAR = PREFIX + "TEMPORAL_TLS_CA"
CERT_VAR = PREFIX + "TEMPORAL_TLS_CERT"
KEY_VAR = PREFIX + "TEMPORAL_TLS_KEY"
SERVER_NAME_VAR = PREFIX + "TEMPORAL_TLS_SERVER_NAME"


class TemporalTlsError(SettingsError):
    """The TLS settings cannot be used; the message names the variable and what to change."""


@dataclass(frozen=True)
class ClientCertificate:
    """What a process's client certificate says about it (for logs and the agent's check)."""

    subject: str
    """The subject, RFC 4514 (``CN=db1``)."""
    names: tuple[str, ...]
    """Its common name(s), then its DNS and IP subject alternative names."""
    not_after: datetime.datetime
    """When it expires (UTC)."""


def tls_enabled(settings: Settings) -> bool:
    """Whether any ``SHADOWSHIFT_TEMPORAL_TLS_*`` variable is set (then TLS is on)."""
    return any((settings.temporal_tls_ca, settings.temporal_tls_cert,
                settings.temporal_tls_key, settings.temporal_tls_server_name))


def tls_config(settings: Settings, *, now: datetime.datetime | None = None) -> TLSConfig | bool:
    """The ``tls`` argument of ``Client.connect`` for ``settings``: ``False`` without TLS.

    Args:
        settings: the process's settings.
        now: the time certificates must be valid at (tests); the current time if omitted.

    Raises:
        TemporalTlsError: see the module docstring.
    """
    if not tls_enabled(settings):
        return False
    now = now or datetime.datetime.now(datetime.UTC)
    ca = None
    if settings.temporal_tls_ca is not None:
        ca = _read(CA_VAR, settings.temporal_tls_ca)
        _check_ca(ca, settings.temporal_tls_ca, now)
    cert = key = None
    if (settings.temporal_tls_cert is None) != (settings.temporal_tls_key is None):
        have, lack = ((CERT_VAR, KEY_VAR) if settings.temporal_tls_key is None
                      else (KEY_VAR, CERT_VAR))
        raise TemporalTlsError(
            f"{have} is set but {lack} is not: mutual TLS needs both the client certificate "
            f"and its private key; set {lack} too (or unset {have} for server-only TLS)")
    if settings.temporal_tls_cert is not None and settings.temporal_tls_key is not None:
        cert = _read(CERT_VAR, settings.temporal_tls_cert)
        key = _read(KEY_VAR, settings.temporal_tls_key, private=True)
        _check_pair(cert, settings.temporal_tls_cert, key, settings.temporal_tls_key, now)
    return TLSConfig(server_root_ca_cert=ca, domain=settings.temporal_tls_server_name or None,
                     client_cert=cert, client_private_key=key)


def client_certificate(settings: Settings) -> ClientCertificate | None:
    """The client certificate ``settings`` configure (``None`` without one), unchecked: call
    :func:`tls_config` first for the checks.

    Raises:
        TemporalTlsError: the file cannot be read or holds no certificate.
    """
    if settings.temporal_tls_cert is None:
        return None
    path = settings.temporal_tls_cert
    leaf = _certificates(CERT_VAR, path, _read(CERT_VAR, path))[0]
    return ClientCertificate(subject=leaf.subject.rfc4514_string(), names=_names(leaf),
                             not_after=leaf.not_valid_after_utc)


def describe(settings: Settings) -> str:
    """How this process talks to Temporal, for its start-up log line."""
    if not tls_enabled(settings):
        return "plaintext"
    identity = client_certificate(settings)
    return f"mutual TLS as {identity.subject}" if identity else "TLS"


def plaintext_off_host(settings: Settings, address: str) -> bool:
    """Whether ``address`` is reached without TLS although it is not on this machine (worth a
    warning: credentials-equivalent traffic crossing a network in clear)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if tls_enabled(settings) or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _read(var: str, path: Path, *, private: bool = False) -> bytes:
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise TemporalTlsError(f"{var}: {path} is not a regular file; point it at a PEM file")
        if private and mode & 0o077:
            raise TemporalTlsError(
                f"{var}: {path} is readable by its group or others (mode "
                f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}`")
        return path.read_bytes()
    except FileNotFoundError:
        raise TemporalTlsError(f"{var}: {path} does not exist; point it at the PEM file or "
                               "unset it") from None
    except PermissionError:
        raise TemporalTlsError(f"{var}: {path} cannot be read by this process's user; "
                               "give it read access") from None
    except OSError as err:
        raise TemporalTlsError(f"{var}: {path} cannot be read ({err.strerror})") from None


def _certificates(var: str, path: Path, pem: bytes) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError:
        found = []
    if not found:
        raise TemporalTlsError(f"{var}: {path} holds no PEM certificate (a '-----BEGIN "
                               "CERTIFICATE-----' block); give the certificate file")
    return found


def _check_ca(pem: bytes, path: Path, now: datetime.datetime) -> None:
    """At least one CA in the file is valid now (a bundle may hold a retired one too)."""
    authorities = _certificates(CA_VAR, path, pem)
    problems = [validity_problem(c, now) for c in authorities]
    if all(problems):
        subject = authorities[0].subject.rfc4514_string()
        raise TemporalTlsError(f"{CA_VAR}: the CA certificate {subject} in {path} "
                               f"{problems[0]}; give the current CA certificate")


def _check_pair(cert_pem: bytes, cert_path: Path, key_pem: bytes, key_path: Path,
                now: datetime.datetime) -> None:
    leaf = _certificates(CERT_VAR, cert_path, cert_pem)[0]
    subject = leaf.subject.rfc4514_string()
    problem = validity_problem(leaf, now)
    if problem:
        raise TemporalTlsError(f"{CERT_VAR}: the client certificate {subject} in {cert_path} "
                               f"{problem}; renew it and replace the file")
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise TemporalTlsError(f"{CERT_VAR}: the certificate {subject} in {cert_path} is not "
                               "for TLS clients (its extended key usage lacks clientAuth); "
                               "issue a client certificate")
    key = _private_key(key_pem, key_path)
    if not key_matches(key, leaf):
        raise TemporalTlsError(f"{KEY_VAR}: the key in {key_path} does not belong to the "
                               f"certificate {subject} in {cert_path} ({CERT_VAR}); give the "
                               "key the certificate was issued for")


def _private_key(pem: bytes, path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # encrypted: the SDK has no way to ask for a passphrase
        raise TemporalTlsError(f"{KEY_VAR}: the key in {path} is encrypted; give it unencrypted "
                               "(`openssl pkey -in KEY -out KEY.plain`, mode 0600)") from None
    except (ValueError, UnsupportedAlgorithm) as err:
        raise TemporalTlsError(f"{KEY_VAR}: {path} holds no usable PEM private key "
                               f"({err}); give the certificate's key") from None


def _names(certificate: x509.Certificate) -> tuple[str, ...]:
    names = [str(a.value) for a in certificate.subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)]
    return tuple(dict.fromkeys(names + alternative_names(certificate)))


# -- what the handshake tells -------------------------------------------------------------

_NAME_VALUE = re.compile(r'(?:DnsName|IpAddress)\(\\?"?([^")\\]+)\\?"?\)')
_ALERT = re.compile(r"received fatal alert: (\w+)")


def tls_problem(err: BaseException, settings: Settings, address: str) -> str | None:
    """What a failed connect says about TLS, in one sentence naming what to change; ``None``
    when it says nothing about TLS (an unreachable address, a timeout...).

    The SDK reports handshake failures as the Rust TLS library's debug text; the patterns
    here are those it produced against a real TLS endpoint (``tests/workers/test_temporal_tls.py``).
    """
    text = str(err)
    if "NotValidForName" in text:
        expected = settings.temporal_tls_server_name or address.rsplit(":", 1)[0].strip("[]")
        presented = ", ".join(_NAME_VALUE.findall(text.partition("presented:")[2]))
        return (f"the server's certificate is not valid for {expected!r} (it names "
                f"{presented or 'other names'}); set {SERVER_NAME_VAR} to a name it carries, "
                "or connect by one")
    if "UnknownIssuer" in text or "BadSignature" in text:
        source = (f"the CA in {CA_VAR} ({settings.temporal_tls_ca})"
                  if settings.temporal_tls_ca else "any CA this system trusts")
        return (f"the server's certificate is not signed by {source}; set {CA_VAR} to the CA "
                "that issued the Temporal frontend's certificate")
    if "InvalidCertificate(Expired" in text:
        return "the server's certificate has expired; the Temporal frontend needs a new one"
    if "InvalidContentType" in text or "CorruptMessage" in text:
        return ("the server does not speak TLS at that address; unset the "
                f"{PREFIX}TEMPORAL_TLS_* variables or give the address of its TLS endpoint")
    # Refusals of our certificate (or of its absence) come after our side of the handshake,
    # as a TLS alert or, as often, as a connection that just closes.
    alert = _ALERT.search(text)
    closed = any(sign in text for sign in ("broken pipe", "connection closed",
                                           "connection reset"))
    # A closed connection may also be a TLS front whose backend is down: say both.
    if tls_enabled(settings) and settings.temporal_tls_cert is None and alert:
        return (f"the server ended the session after the TLS handshake (TLS alert {alert[1]}):"
                f" it requires a client certificate (mutual TLS); set {CERT_VAR} and {KEY_VAR}")
    if tls_enabled(settings) and settings.temporal_tls_cert is None and closed:
        return ("the server closed the connection: either it requires a client certificate "
                f"(mutual TLS), then set {CERT_VAR} and {KEY_VAR}, or the service behind "
                "its TLS front is down")
    if settings.temporal_tls_cert is not None and (alert or closed):
        how = f"TLS alert {alert[1]}" if alert else "it closed the connection"
        return (f"the server refused our client certificate ({how}): it does not trust the "
                f"CA that issued {settings.temporal_tls_cert} ({CERT_VAR}) or does not "
                "accept it (or, with no alert, the service behind its TLS front is down); use "
                "a certificate from the CA the server verifies clients with")
    if not tls_enabled(settings) and closed:
        return ("the server closed a plaintext connection; if it requires TLS, set "
                f"{CA_VAR} (and {CERT_VAR}/{KEY_VAR} for mutual TLS)")
    return None


def announce(log: logging.Logger, settings: Settings, address: str) -> None:
    """Log once connected how the process talks to Temporal (a warning for plaintext to
    another machine: whoever is on the path reads and can forge every call)."""
    if plaintext_off_host(settings, address):
        log.warning("Talking to Temporal at %s in plaintext: set %s (docs/security.md).",
                    address, CA_VAR)
    else:
        log.info("Talking to Temporal at %s over %s.", address, describe(settings))
