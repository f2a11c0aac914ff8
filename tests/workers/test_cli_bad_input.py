"""Bad input to ``shadowshift``: a malformed spec names the line and the field and starts
nothing; an unreachable Temporal or an unknown instance is one line and a meaningful exit
code."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from infra.local.ports import free_port
from tests.workers.cli_helpers import shadowshift
from workers.cli_base import BAD_INPUT, NOT_FOUND, UNREACHABLE
from workers.cli_spec import SpecFileError, load_spec_file

GOOD = """\
instance_id: db-orders
platform: local
tier: 1
primary_port: 5433
shadow_port: 5434
router_port: 6433
policy:
  threshold: 65
  advisory: true
"""


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("tier: 1", "tier: one", ":3: tier: expected an integer, got 'one'"),
        ("tier: 1", "tier: 7", ":3: tier 7: allowed values are 1, 2, 3"),
        ("  threshold: 65", "  threshold: 165", ":8: policy.threshold 165.0 is outside 0..100"),
        ("  advisory: true", "  advisory: maybe", ":9: policy.advisory: expected true or false"),
        ("  advisory: true", "  advisory: true\n  failover_after_s: 0.1",
         ":10: policy.failover_after_s 0.1 is outside 0.5..3600 (0 turns automatic failover "
         "off)"),
        ("  advisory: true", "  advisroy: true", ":9: policy.advisroy: unknown field; allowed:"),
        ("shadow_port: 5434", "shadow_port: 5433", ":4: primary_port, shadow_port and "
         "router_port must differ"),
        ("router_port: 6433", "router_port: 80", ":6: router_port 80 is outside 1024..65535"),
        ("instance_id: db-orders", "instance_id: DB_Orders", ":1: instance_id 'DB_Orders'"),
        ("instance_id: db-orders\n", "", ":1: instance_id: required"),
        ("policy:\n  threshold: 65\n  advisory: true\n", "policy: strict\n",
         ":7: policy: expected a mapping of fields"),
        ("tier: 1\n", "tier: [1\n", ":4: not valid YAML"),
    ],
)
def test_malformed_spec_names_line_and_field(
    tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    """Each mistake is reported as file:line: field: what is wrong."""
    assert replace in GOOD
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD.replace(replace, by, 1))
    with pytest.raises(SpecFileError) as error:
        load_spec_file(path)
    assert str(error.value).startswith(f"{path}{expected}"), str(error.value)


def test_good_spec_loads(tmp_path: Path) -> None:
    """The documented example loads with every field as written."""
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD)
    spec = load_spec_file(path)
    assert (spec.instance_id, spec.tier, spec.primary_port, spec.router_port) == \
        ("db-orders", 1, 5433, 6433)
    assert (spec.policy.threshold, spec.policy.advisory) == (65.0, True)


async def test_malformed_spec_starts_nothing(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The CLI prints one line with the line and field, exits 2, and no workflow exists."""
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD.replace("tier: 1", "tier: 9"))
    address = temporal_env.client.service_client.config.target_host
    result = await shadowshift("protect", str(path), "--address", address)
    assert result.returncode == BAD_INPUT
    assert result.stderr == f"shadowshift: error: {path}:3: tier 9: allowed values are 1, 2, 3\n"
    with pytest.raises(RPCError) as missing:
        await temporal_env.client.get_workflow_handle("protect-db-orders").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_unreachable_temporal_and_unknown_instance(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Nothing listening: exit 3 with one line naming the address. Unknown instance: exit 4."""
    dead = f"127.0.0.1:{free_port()}"
    for args in (["status"], ["cutover", "db-x"]):
        result = await shadowshift(*args, "--address", dead)
        assert result.returncode == UNREACHABLE, result.stderr
        assert result.stderr.count("\n") == 1 and f"cannot reach Temporal at {dead}" in \
            result.stderr
    address = temporal_env.client.service_client.config.target_host
    for args in (["report", "db-nosuch"], ["unprotect", "db-nosuch"]):
        result = await shadowshift(*args, "--address", address)
        assert result.returncode == NOT_FOUND, result.stderr
        assert result.stderr == ("shadowshift: error: unknown instance 'db-nosuch': no "
                                 "protection (workflow protect-db-nosuch) in this namespace; "
                                 "`shadowshift status` lists them\n")


def test_documented_spec_example_loads(tmp_path: Path) -> None:
    """The spec file shown in docs/cli.md is valid as written."""
    section = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    start = section.index("```yaml\n") + len("```yaml\n")
    example = section[start:section.index("```\n", start)]
    path = tmp_path / "spec.yaml"
    path.write_text(example)
    spec = load_spec_file(path)
    assert (spec.instance_id, spec.tier, spec.policy.threshold) == ("db-orders", 1, 60.0)


async def test_the_cli_needs_no_worker_files(
    temporal_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a machine with no worker state (no Pulumi passphrase), the CLI still talks to
    Temporal: an unknown instance is exit 4, not a settings error."""
    monkeypatch.setenv("SHADOWSHIFT_STATE_DIR", str(tmp_path / "no-worker-here"))
    monkeypatch.delenv("SHADOWSHIFT_PULUMI_PASSPHRASE_FILE", raising=False)
    address = temporal_env.client.service_client.config.target_host
    result = await shadowshift("status", "db-x", "--address", address)
    assert result.returncode == NOT_FOUND, result.stderr
