"""Names that reach shell commands, file paths, Pulumi stack names and HAProxy's runtime API
(instance ids, host names, node names, stack names, Temporal names) are refused unless they
are made only of safe characters: no ``;``, ``$()``, ``../``, line break, NUL or overlong
string gets through any of the validators that guard those places."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.agent_server import NODE_NAME
from contracts.spec import ProtectionSpec, SpecError, validate_spec
from contracts.spec_hosts import (
    HostPlacement,
    HostsSection,
    HostsSectionError,
    validate_hosts_section,
)
from infra.errors import InvalidRequestError
from infra.names import validate_instance_id, validate_stack_name
from workers.agent_settings import host_name
from workers.settings import SettingsError, load_settings

HOSTILE = [
    "db1;rm -rf /", "db1$(reboot)", "db1`id`", "../../etc", "db1/../x", "db1\n",
    "db1\nset server be_x/y weight 256", "db1\r", "db1\x00", "db 1", "db1|nc", "db1&",
    "db1>x", "a" * 5000, "db1\t", "\uff44\uff42" + "1", "db1\u2028", "",
]
"""The names an attacker or a typo would try, one per kind of trouble."""

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
"""What every accepted name must look like: nothing a shell, a path, HAProxy's runtime API
(``;``-separated, one command per line) or Pulumi treats specially."""


def _spec(instance_id: str) -> ProtectionSpec:
    return ProtectionSpec(instance_id=instance_id, primary_port=15432, shadow_port=15433,
                          router_port=15434)


def _refuses(check: Callable[[str], object], name: str,
             errors: tuple[type[Exception], ...]) -> bool:
    try:
        check(name)
    except errors:
        return True
    return False


def _hosts(host: str) -> None:
    validate_hosts_section(HostsSection(primary=HostPlacement(host, "10.0.0.1"),
                                        shadow=HostPlacement("other", "10.0.0.2")))


def _namespace(name: str) -> None:
    load_settings({"SHADOWSHIFT_NAMESPACE": name}, worker=False)


VALIDATORS: dict[str, tuple[Callable[[str], object], tuple[type[Exception], ...]]] = {
    "spec instance_id": (lambda name: validate_spec(_spec(name)), (SpecError,)),
    "infra instance id": (validate_instance_id, (InvalidRequestError,)),
    "Pulumi stack name": (validate_stack_name, (InvalidRequestError,)),
    "spec hosts host": (_hosts, (HostsSectionError,)),
    "agent --host": (host_name, (argparse.ArgumentTypeError,)),
    "agent node name": (lambda name: NODE_NAME.match(name) or _raise(), (ValueError,)),
    "Temporal namespace": (_namespace, (SettingsError,)),
}


def _raise() -> None:
    raise ValueError("refused")


@pytest.mark.parametrize("validator", VALIDATORS)
@pytest.mark.parametrize("name", HOSTILE, ids=[repr(n)[:24] for n in HOSTILE])
def test_every_hostile_name_is_refused(validator: str, name: str) -> None:
    """Each validator refuses each hostile name with its own error type. A trailing line
    break used to pass them all: ``$`` in a Python regex also matches before a final
    ``\\n``, so ``db1\\n`` was a valid instance id and host name."""
    check, errors = VALIDATORS[validator]
    assert _refuses(check, name, errors), f"{validator} accepted {name!r}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(min_size=0, max_size=80))
def test_whatever_a_validator_accepts_is_made_of_safe_characters(name: str) -> None:
    """For any string, each validator either refuses it with its error type (never another
    exception) or it is made only of letters, digits, ``_``, ``.`` and ``-`` (and no
    ``..``, for what becomes a path)."""
    for validator, (check, errors) in VALIDATORS.items():
        if not _refuses(check, name, errors):
            assert SAFE.match(name), f"{validator} accepted {name!r}"
            assert ".." not in name or validator in ("agent node name", "Temporal namespace")
