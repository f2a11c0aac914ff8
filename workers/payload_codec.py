"""Payload encryption: the AES-256-GCM codec and the data converter every process builds.

Temporal stores what a workflow receives and returns (specs with hostnames, ports and users;
results; heartbeat details; user metadata such as the Web UI summary) as *payloads* in its
history. With a key configured, this codec encrypts each payload before it leaves the process
and decrypts it on the way in, so the server, its database and anyone with Web UI access
without the key see only ciphertext. Failure messages and stack traces are encrypted too (the
failure converter's ``encode_common_attributes``), since they name hosts as often as inputs do.

An encrypted payload has the metadata ``encoding: binary/encrypted``,
``encryption-cipher: AES-256-GCM`` and ``encryption-key-id: <id>``; its data is a 12-byte
random nonce followed by the GCM ciphertext and tag of the original payload (metadata and
data, serialised). The key id and a version tag are the associated data, so a payload whose
key id was rewritten fails authentication instead of decrypting under the wrong name.

Decoding passes unencrypted payloads through: a workflow started with the plain ``temporal``
CLI, or recorded before encryption was turned on, stays readable. Search attributes are not
payloads the codec sees and stay readable by design (docs/security.md lists them).

Why this lives in ``workers/`` and not in ``contracts.wire``: it imports ``cryptography`` and
reads keys from the environment's settings, and contracts (imported by every workflow) import
only the standard library and ``temporalio``. Workflows never see the codec: the worker applies
it outside the sandbox.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.exceptions import ApplicationError

from contracts.wire import DATA_CONVERTER, FailureConverter
from workers.payload_keys import KEY_FILE_VAR, KeyRing, key_ring
from workers.settings import Settings

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
KEY_ID_KEY = "encryption-key-id"
CIPHER_KEY = "encryption-cipher"
NONCE_BYTES = 12
_AAD_PREFIX = b"shadowshift-payload-v1:"


class UnknownPayloadKeyError(ApplicationError):
    """A payload is encrypted with a key this process does not have.

    Retryable: in a rolling key rotation another worker (or this one, restarted with the key
    added after the current one) can decrypt it, and Temporal retries the task there.
    """

    def __init__(self, key_id: str, ring: KeyRing | None) -> None:
        have = (f"this process has {', '.join(ring.keys)} from {ring.source}" if ring
                else "this process has no payload keys")
        super().__init__(
            f"a payload is encrypted with key id {key_id!r} but {have}; add that key after the "
            f"current one in {KEY_FILE_VAR} (keys are only ever appended during a rotation)",
            type="UnknownPayloadKey")


class TamperedPayloadError(ApplicationError):
    """An encrypted payload fails authentication: altered, truncated, or its key id rewritten.

    Non-retryable: the stored bytes are wrong, and no retry or key change makes them right.
    """

    def __init__(self, key_id: str, reason: str) -> None:
        super().__init__(
            f"a payload encrypted with key id {key_id!r} fails authentication ({reason}): it "
            "was altered or damaged after encryption; it cannot be trusted or read",
            type="TamperedPayload", non_retryable=True)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM with the ring's current key; decrypts with whichever key a payload names.

    Without a ring (encryption off) it encodes nothing but still decodes with a clear
    :class:`UnknownPayloadKeyError`, rather than the default converter's "unknown encoding",
    when an encrypted payload reaches a process that has no keys.
    """

    def __init__(self, ring: KeyRing | None) -> None:
        self.ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in (ring.keys if ring else {}).items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload encrypted with the current key (unchanged when encryption is off)."""
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each encrypted payload decrypted; unencrypted ones passed through."""
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted with the current key (or as it is, without keys)."""
        if self.ring is None:
            return payload
        key_id = self.ring.current_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), _aad(key_id))
        return Payload(metadata={"encoding": ENCODING, CIPHER_KEY: CIPHER,
                                 KEY_ID_KEY: key_id.encode()},
                       data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """One payload, decrypted if it is encrypted.

        Raises:
            UnknownPayloadKeyError: encrypted with a key id this process lacks.
            TamperedPayloadError: it fails authentication or is not a payload once decrypted.
        """
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_KEY, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownPayloadKeyError(key_id, self.ring)
        if payload.metadata.get(CIPHER_KEY) != CIPHER:
            raise TamperedPayloadError(key_id, "unknown cipher "
                                       f"{payload.metadata.get(CIPHER_KEY, b'')!r}")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _aad(key_id))
        except (InvalidTag, ValueError):
            raise TamperedPayloadError(key_id, "the GCM tag does not match") from None
        original = Payload()
        try:
            original.ParseFromString(plain)
        except Exception:  # protobuf's DecodeError; authenticated bytes make this near-impossible
            raise TamperedPayloadError(key_id, "the plaintext is not a payload") from None
        return original


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode()


class EncryptedFailureConverter(FailureConverter):
    """Our failure converter that moves messages and stack traces into an encoded payload."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


def converter_for(ring: KeyRing | None) -> DataConverter:
    """:data:`contracts.wire.DATA_CONVERTER` with the codec of ``ring``.

    With a ring, failures' messages and stack traces are encrypted too. Without one the codec
    still turns "cannot decode" into an error that says which key is missing.
    """
    if ring is None:
        return dataclasses.replace(DATA_CONVERTER, payload_codec=EncryptionCodec(None))
    return dataclasses.replace(DATA_CONVERTER, payload_codec=EncryptionCodec(ring),
                               failure_converter_class=EncryptedFailureConverter)


def data_converter(settings: Settings) -> DataConverter:
    """The data converter of a ShadowShift client or worker with ``settings``.

    Raises:
        PayloadKeyError: the keys are configured but unusable (the message says how to fix).
    """
    return converter_for(key_ring(settings))


def announce(log: logging.Logger, converter: DataConverter) -> None:
    """Log once connected whether payloads are encrypted and with which key id (a warning when
    they are not: an operator should notice a worker that stores specs in clear)."""
    codec = converter.payload_codec
    if isinstance(codec, EncryptionCodec) and codec.ring is not None:
        log.info("Payloads are encrypted (AES-256-GCM, current key %r, %d key(s) from %s).",
                 codec.ring.current_id, len(codec.ring.keys), codec.ring.source)
    else:
        log.warning("Payloads are NOT encrypted: workflow inputs and results are stored in "
                    "clear in Temporal's history; set %s to encrypt them (docs/security.md).",
                    KEY_FILE_VAR)
