"""Property tests of settings parsing with hostile values: any ``SHADOWSHIFT_*`` environment,
any agent option and any payload key text gives settings or the project's own error naming
the variable (or option, or key entry); nothing else escapes, and parsing creates nothing."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.agent_settings import host_address, host_name, network, tcp_port
from workers.payload_keys import PayloadKeyError, parse_keys
from workers.settings import KNOWN_VARIABLES, PREFIX, SettingsError, load_settings

_HOSTILE = st.sampled_from([
    "", " ", "\n", "a\x00b", "../../etc/passwd", "~nobody-at-all/x", "$(reboot)", "x;y",
    "-1", "1e309", "nan", "0x10", "9" * 5000, "٣", "localhost:", ":7233", "[::1]:99999",
    "http://", "file://", "DEBUG\n", "auto\n", "k:" + "A" * 43,
])
_VALUE = st.one_of(_HOSTILE, st.text(max_size=40))
_VARIABLE = st.one_of(st.sampled_from(KNOWN_VARIABLES),
                      st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", max_size=12).map(
                          lambda s: PREFIX + s))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=st.dictionaries(_VARIABLE, _VALUE, max_size=4), worker=st.booleans())
def test_any_environment_gives_settings_or_an_error_naming_a_variable(
    env: dict[str, str], worker: bool,
) -> None:
    """Unknown variables, malformed values, NUL bytes, ``~unknown-user`` paths, overlong
    numbers: :class:`SettingsError` naming the variable (a NUL or ``~nobody`` path used to
    escape as ``ValueError``/``RuntimeError``)."""
    try:
        load_settings(env, worker=worker)
    except SettingsError as err:
        message = str(err)
        named = [var for var in env if var in message]
        assert named or "SHADOWSHIFT_PULUMI" in message, message
        assert "A" * 43 not in message or "PAYLOAD_KEYS" not in message  # keys never echoed


@pytest.mark.parametrize("raw", ["a\x00b", "~nobody-at-all/state", "   "])
def test_a_path_variable_that_is_no_path_names_the_variable(raw: str) -> None:
    """The regression cases of the property above, one line each."""
    with pytest.raises(SettingsError, match="SHADOWSHIFT_STATE_DIR"):
        load_settings({"SHADOWSHIFT_STATE_DIR": raw}, worker=False)


@settings(max_examples=150, deadline=None)
@given(raw=_VALUE)
def test_agent_options_refuse_with_argparse_errors(raw: str) -> None:
    """Every agent option type accepts or raises ``ArgumentTypeError`` (argparse turns it
    into a usage line naming the option); an accepted host name is safe in a task queue."""
    for parse in (host_name, host_address, tcp_port, network):
        try:
            parse(raw)
        except argparse.ArgumentTypeError:
            continue
        if parse is host_name:
            assert re.fullmatch(r"[a-z][a-z0-9-]*", raw), raw


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(_VALUE, st.lists(_VALUE, max_size=4).map("\n".join),
                      st.binary(max_size=60).map(lambda b: b.decode("latin-1"))),
       separator=st.sampled_from(["\n", ","]))
def test_any_key_text_gives_a_key_ring_or_an_error_naming_the_entry(text: str,
                                                                    separator: str) -> None:
    """Payload keys: a ring of 32-byte keys, or :class:`PayloadKeyError` naming the source
    and entry, never quoting what looked like key material."""
    try:
        ring = parse_keys(text, "KEYS", separator=separator)
    except PayloadKeyError as err:
        assert str(err).startswith("KEYS"), str(err)
    else:
        assert all(len(key) == 32 for key in ring.keys.values())


def test_parsing_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state dir, passphrase or key file named in the environment is only read: loading
    settings that point into an empty folder leaves it empty."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError):
        load_settings({"SHADOWSHIFT_STATE_DIR": str(tmp_path / "state")})
    load_settings({"SHADOWSHIFT_STATE_DIR": str(tmp_path / "state"),
                   "SHADOWSHIFT_PAYLOAD_KEY_FILE": str(tmp_path / "keys")}, worker=False)
    assert list(tmp_path.iterdir()) == []
