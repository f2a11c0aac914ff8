"""The payload codec and its keys: round trip, rotation, unknown keys, tampering, and the
errors a bad key configuration gives at start-up (no server needed)."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from workers.payload_codec import (
    KEY_ID_KEY,
    EncryptionCodec,
    TamperedPayloadError,
    UnknownPayloadKeyError,
    converter_for,
    data_converter,
)
from workers.payload_keys import (
    KeyRing,
    PayloadKeyError,
    key_ring,
    new_entry,
    parse_keys,
    read_key_file,
)
from workers.settings import load_settings

MARKER = "hunter2-marker-7f3a"


def _ring(*entries: str) -> KeyRing:
    return parse_keys("\n".join(entries), "test keys")


def _payload(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


OLD, NEW = new_entry("old"), new_entry("new")


async def test_a_payload_round_trips_and_its_ciphertext_hides_the_plaintext() -> None:
    """Encoding gives a payload whose bytes do not contain the value and which names its
    key; decoding gives back the original payload, metadata included."""
    codec = EncryptionCodec(_ring(OLD))
    original = _payload({"password": MARKER})
    (sealed,) = await codec.encode([original])
    assert MARKER.encode() not in sealed.SerializeToString()
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert sealed.metadata[KEY_ID_KEY] == b"old"
    (opened,) = await codec.decode([sealed])
    assert opened == original


async def test_two_encryptions_of_one_value_differ() -> None:
    """A fresh nonce per payload: equal inputs do not give equal ciphertexts (which would
    let a reader of the history see which workflows got the same spec)."""
    codec = EncryptionCodec(_ring(OLD))
    first, second = await codec.encode([_payload(MARKER), _payload(MARKER)])
    assert first.data != second.data


async def test_after_rotation_old_payloads_decrypt_and_new_ones_use_the_new_key() -> None:
    """The first key encrypts; a key listed after it still decrypts what it encrypted."""
    (before,) = await EncryptionCodec(_ring(OLD)).encode([_payload(MARKER)])
    rotated = EncryptionCodec(_ring(NEW, OLD))
    (after,) = await rotated.encode([_payload(MARKER)])
    assert after.metadata[KEY_ID_KEY] == b"new"
    assert await rotated.decode([before, after]) == [_payload(MARKER), _payload(MARKER)]


async def test_a_payload_of_a_key_this_process_lacks_is_refused_naming_the_key() -> None:
    """A retired key's payload: a retryable error naming the key id and what to add, and
    never the key material of the keys this process has."""
    (sealed,) = await EncryptionCodec(_ring(OLD)).encode([_payload(MARKER)])
    with pytest.raises(UnknownPayloadKeyError) as refused:
        await EncryptionCodec(_ring(NEW)).decode([sealed])
    message = str(refused.value)
    assert "'old'" in message and "SHADOWSHIFT_PAYLOAD_KEY_FILE" in message
    assert NEW.split(":")[1] not in message
    assert not refused.value.non_retryable


async def test_a_process_without_keys_says_so_instead_of_unknown_encoding() -> None:
    """Encryption off: payloads pass through both ways, and an encrypted one meets a message
    saying this process has no keys."""
    codec = EncryptionCodec(None)
    assert await codec.encode([_payload(MARKER)]) == [_payload(MARKER)]
    (sealed,) = await EncryptionCodec(_ring(OLD)).encode([_payload(MARKER)])
    with pytest.raises(UnknownPayloadKeyError, match="has no payload keys"):
        await codec.decode([sealed])


async def test_unencrypted_payloads_pass_through_decoding() -> None:
    """A workflow started by the plain temporal CLI (or before encryption) stays readable."""
    codec = EncryptionCodec(_ring(OLD))
    assert await codec.decode([_payload(MARKER)]) == [_payload(MARKER)]


@pytest.mark.parametrize("tamper", ["flip a ciphertext bit", "truncate", "rename the key id",
                                    "swap the nonce"])
async def test_any_change_to_an_encrypted_payload_is_detected(tamper: str) -> None:
    """GCM authenticates the ciphertext, and the key id is associated data: a flipped bit, a
    cut, or a payload relabelled with another (known) key id is refused, non-retryably."""
    codec = EncryptionCodec(_ring(NEW, OLD))
    (sealed,) = await codec.encode([_payload(MARKER)])
    data = bytearray(sealed.data)
    metadata = dict(sealed.metadata)
    if tamper == "flip a ciphertext bit":
        data[20] ^= 1
    elif tamper == "truncate":
        data = data[:-1]
    elif tamper == "rename the key id":
        metadata[KEY_ID_KEY] = b"old"
    else:
        data[0] ^= 0xFF
    with pytest.raises(TamperedPayloadError) as refused:
        await codec.decode([Payload(metadata=metadata, data=bytes(data))])
    assert refused.value.non_retryable and "fails authentication" in str(refused.value)


async def test_failure_messages_are_encrypted_with_a_key() -> None:
    """With keys, an error's message and stack trace travel encrypted too (they name hosts as
    often as inputs do), and the converter restores them."""
    converter = converter_for(_ring(OLD))
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"cannot reach {MARKER}"), failure)
    assert MARKER.encode() not in failure.SerializeToString()
    assert MARKER in str(await converter.decode_failure(failure))


@pytest.mark.parametrize(("text", "expected"), [
    ("", "holds no key"),
    ("# only a comment\n\n", "holds no key"),
    ("k1", "expected <key id>:<base64 key>"),
    ("bad id!:" + base64.b64encode(bytes(32)).decode(), "expected <key id>:<base64 key>"),
    ("k1:not base64!", "not valid base64"),
    ("k1:" + base64.b64encode(bytes(16)).decode(), "is 16 bytes; AES-256 needs exactly 32"),
    (f"{OLD}\n{OLD}", "appears twice"),
])
def test_a_malformed_key_list_is_refused_saying_what_to_change(text: str,
                                                               expected: str) -> None:
    """Each kind of bad entry gets its own message naming the source and line."""
    with pytest.raises(PayloadKeyError, match=expected) as refused:
        parse_keys(text, "test keys")
    assert "test keys" in str(refused.value)


def test_keys_parse_from_either_base64_alphabet_and_the_first_is_current() -> None:
    """URL-safe base64 without padding (what many secret tools print) is accepted too."""
    raw = bytes(range(200, 232))
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    ring = parse_keys(f"# rotated 2026-12\nb:{urlsafe}\n{OLD}\n", "file")
    assert ring.current_id == "b" and ring.keys["b"] == raw and list(ring.keys) == ["b", "old"]
    assert "keys=" not in repr(ring)


def test_a_key_file_must_exist_and_be_private(tmp_path: Path) -> None:
    """A missing file names the variable; a group-readable one is refused with the chmod."""
    path = tmp_path / "payload-keys"
    with pytest.raises(PayloadKeyError, match="does not exist"):
        read_key_file(path)
    path.write_text(OLD + "\n")
    path.chmod(0o640)
    with pytest.raises(PayloadKeyError, match="chmod 600"):
        read_key_file(path)
    path.chmod(0o600)
    assert read_key_file(path).current_id == "old"


def test_settings_choose_the_key_source_and_never_show_keys(tmp_path: Path) -> None:
    """The inline variable works, setting both sources is refused, ``required`` refuses to
    run without a key, and the settings' repr omits the inline keys."""
    inline = load_settings({"SHADOWSHIFT_PAYLOAD_KEYS": f"{NEW},{OLD}"}, worker=False)
    assert key_ring(inline) is not None and NEW.split(":")[1] not in repr(inline)
    assert list(key_ring(inline).keys) == ["new", "old"]  # type: ignore[union-attr]
    both = dataclasses.replace(inline, payload_key_file=tmp_path / "keys")
    with pytest.raises(PayloadKeyError, match="set only one"):
        key_ring(both)
    required = load_settings({"SHADOWSHIFT_PAYLOAD_ENCRYPTION": "required"}, worker=False)
    with pytest.raises(PayloadKeyError, match="required"):
        data_converter(required)
    assert key_ring(load_settings({}, worker=False)) is None
