"""The ``SHADOWSHIFT_TEMPORAL_TLS_*`` settings are checked before anything connects: each
unusable file, pair or certificate is refused with one sentence naming the variable and what
to change (``workers/temporal_tls.py``). No server here; ``test_temporal_tls.py`` connects."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from temporalio.service import TLSConfig

from tests.workers.tls_lab import CertificateAuthority, Issued
from workers.agent import AgentStartError, check_identity
from workers.settings import Settings, SettingsError, load_settings
from workers.temporal_tls import (
    TemporalTlsError,
    client_certificate,
    describe,
    plaintext_off_host,
    tls_config,
)

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """The lab CA, with the certificates the tests below pick from."""
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def client(ca: CertificateAuthority) -> Issued:
    """A valid client certificate for host ``db1``."""
    return ca.issue("db1", dns=["db1"])


def tls_settings(**variables: object) -> Settings:
    """Settings from ``SHADOWSHIFT_TEMPORAL_TLS_<NAME>`` variables given as ``name=value``."""
    env = {f"SHADOWSHIFT_TEMPORAL_TLS_{name.upper()}": str(value)
           for name, value in variables.items()}
    return load_settings(env, worker=False)


def refusal(**variables: object) -> str:
    """The message :func:`tls_config` refuses these settings with."""
    with pytest.raises(TemporalTlsError) as refused:
        tls_config(tls_settings(**variables))
    return str(refused.value)


def test_no_tls_variable_means_plaintext() -> None:
    """Without any TLS variable the client connects in plaintext, as to a local dev server."""
    settings = tls_settings()
    assert tls_config(settings) is False
    assert describe(settings) == "plaintext"


def test_a_ca_alone_gives_server_authenticated_tls(ca: CertificateAuthority) -> None:
    """The CA file's bytes verify the server; no client certificate is presented."""
    config = tls_config(tls_settings(ca=ca.cert_file))
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == ca.cert_file.read_bytes()
    assert config.client_cert is None and config.client_private_key is None
    assert config.domain is None


def test_cert_and_key_give_mutual_tls(ca: CertificateAuthority, client: Issued) -> None:
    """With certificate, key and server name, all three reach the SDK's TLS config."""
    settings = tls_settings(ca=ca.cert_file, cert=client.cert, key=client.key,
                            server_name="temporal.example.com")
    config = tls_config(settings)
    assert isinstance(config, TLSConfig)
    assert config.client_cert == client.cert.read_bytes()
    assert config.client_private_key == client.key.read_bytes()
    assert config.domain == "temporal.example.com"
    assert describe(settings) == "mutual TLS as CN=db1"


def test_a_missing_file_names_its_variable(tmp_path: Path, ca: CertificateAuthority,
                                           client: Issued) -> None:
    """Each of the three files, missing, is named with its variable and path."""
    missing = tmp_path / "nowhere.pem"
    assert "SHADOWSHIFT_TEMPORAL_TLS_CA" in refusal(ca=missing)
    message = refusal(ca=ca.cert_file, cert=missing, key=client.key)
    assert message.startswith("SHADOWSHIFT_TEMPORAL_TLS_CERT:") and str(missing) in message
    assert "does not exist" in message
    assert refusal(cert=client.cert, key=missing).startswith("SHADOWSHIFT_TEMPORAL_TLS_KEY:")


def test_a_folder_or_non_pem_file_is_refused(tmp_path: Path, client: Issued) -> None:
    """A folder is no file, and a file without a PEM certificate is named as such."""
    assert "is not a regular file" in refusal(ca=tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert "holds no PEM certificate" in refusal(ca=junk)
    # The key given where the certificate belongs (an easy mix-up).
    assert "SHADOWSHIFT_TEMPORAL_TLS_CERT" in refusal(cert=client.key, key=client.key)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_refused(tmp_path: Path, ca: CertificateAuthority) -> None:
    """A file this user cannot read says so (and which user lacks access)."""
    locked = tmp_path / "ca.pem"
    locked.write_bytes(ca.cert_file.read_bytes())
    locked.chmod(0)
    assert "cannot be read by this process's user" in refusal(ca=locked)


def test_a_cert_without_key_or_key_without_cert_is_refused(client: Issued) -> None:
    """Mutual TLS needs both halves; the message names the one that is missing."""
    message = refusal(cert=client.cert)
    assert "SHADOWSHIFT_TEMPORAL_TLS_CERT is set but SHADOWSHIFT_TEMPORAL_TLS_KEY is not" \
        in message
    assert "SHADOWSHIFT_TEMPORAL_TLS_KEY is set but SHADOWSHIFT_TEMPORAL_TLS_CERT is not" \
        in refusal(key=client.key)


def test_an_expired_or_not_yet_valid_client_certificate_is_refused(
        ca: CertificateAuthority) -> None:
    """The validity window is checked at start-up, with the date in the message."""
    expired = ca.issue("old", not_before=NOW - datetime.timedelta(days=60),
                       not_after=NOW - datetime.timedelta(days=1))
    message = refusal(cert=expired.cert, key=expired.key)
    assert message.startswith("SHADOWSHIFT_TEMPORAL_TLS_CERT: the client certificate CN=old")
    assert "expired on" in message and "renew it" in message
    early = ca.issue("early", not_before=NOW + datetime.timedelta(days=1))
    assert "is not valid before" in refusal(cert=early.cert, key=early.key)


def test_an_expired_ca_is_refused(tmp_path: Path, ca: CertificateAuthority) -> None:
    """A CA file whose only certificate has expired cannot verify any server."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    lapsed = (x509.CertificateBuilder().subject_name(ca.certificate.subject)
              .issuer_name(ca.certificate.subject).public_key(ca.key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(NOW - datetime.timedelta(days=10))
              .not_valid_after(NOW - datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca.key, hashes.SHA256()))
    old_ca = tmp_path / "old-ca.pem"
    old_ca.write_bytes(lapsed.public_bytes(serialization.Encoding.PEM))
    message = refusal(ca=old_ca)
    assert message.startswith("SHADOWSHIFT_TEMPORAL_TLS_CA: the CA certificate")
    assert "expired on" in message


def test_a_key_of_another_certificate_is_refused(ca: CertificateAuthority,
                                                 client: Issued) -> None:
    """A key that does not belong to the certificate is caught before the handshake."""
    other = ca.issue("db2", dns=["db2"])
    message = refusal(cert=client.cert, key=other.key)
    assert message.startswith("SHADOWSHIFT_TEMPORAL_TLS_KEY: the key in")
    assert "does not belong to the certificate CN=db1" in message


def test_an_encrypted_or_shared_key_is_refused(tmp_path: Path, client: Issued) -> None:
    """The SDK cannot ask for a passphrase, and a key others can read protects nothing."""
    key = serialization.load_pem_private_key(client.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    encrypted.chmod(0o600)
    assert "is encrypted; give it unencrypted" in refusal(cert=client.cert, key=encrypted)
    shared = tmp_path / "shared.key"
    shared.write_bytes(client.key.read_bytes())
    shared.chmod(0o644)
    assert "chmod 600" in refusal(cert=client.cert, key=shared)


def test_a_server_certificate_is_no_client_certificate(ca: CertificateAuthority) -> None:
    """A certificate whose extended key usage excludes clientAuth would be refused by the
    server; we say so first."""
    server = ca.issue("temporal", dns=["localhost"], server=True, file_name="server-only")
    assert "lacks clientAuth" in refusal(cert=server.cert, key=server.key)


def test_a_malformed_server_name_is_a_settings_error() -> None:
    """The server name is a DNS name or an IP address, nothing else."""
    with pytest.raises(SettingsError, match="SHADOWSHIFT_TEMPORAL_TLS_SERVER_NAME"):
        tls_settings(server_name="temporal example")
    assert tls_settings(server_name="127.0.0.1").temporal_tls_server_name == "127.0.0.1"


def test_client_certificate_lists_its_names(ca: CertificateAuthority) -> None:
    """The common name comes first, then DNS and IP names, each once."""
    issued = ca.issue("db7", dns=["db7", "db7.example.com"], ips=["10.0.0.7"])
    identity = client_certificate(tls_settings(cert=issued.cert, key=issued.key))
    assert identity is not None
    assert identity.names == ("db7", "db7.example.com", "10.0.0.7")


def test_an_agent_refuses_another_hosts_certificate(ca: CertificateAuthority,
                                                    client: Issued) -> None:
    """An agent for ``db2`` holding ``db1``'s certificate does not start; its own passes."""
    settings = tls_settings(ca=ca.cert_file, cert=client.cert, key=client.key)
    with pytest.raises(AgentStartError) as refused:
        check_identity(settings, "db2")
    message = str(refused.value)
    assert message.startswith("SHADOWSHIFT_TEMPORAL_TLS_CERT:")
    assert "CN=db1 (names: db1), not of host db2" in message and "CN=db2" in message
    check_identity(settings, "db1")
    check_identity(tls_settings(ca=ca.cert_file), "db2")  # no client certificate: no identity


def test_plaintext_to_another_machine_is_worth_a_warning(ca: CertificateAuthority) -> None:
    """Loopback in plaintext is a dev server; any other address in plaintext is warned of."""
    plain = tls_settings()
    assert not plaintext_off_host(plain, "localhost:7233")
    assert not plaintext_off_host(plain, "127.0.0.1:7233")
    assert not plaintext_off_host(plain, "[::1]:7233")
    assert plaintext_off_host(plain, "temporal.internal:7233")
    assert not plaintext_off_host(tls_settings(ca=ca.cert_file), "temporal.internal:7233")
