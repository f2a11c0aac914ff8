"""The seams hold: light contracts, activities and messages by reference, enforced layering."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import cutover, outcomes, protection, retraining, shadow, watch
from workers.registry import WORKFLOWS

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numpy", "lightgbm", "pandas", "sklearn", "boto3", "botocore", "moto", "pulumi",
         "pulumi_aws", "pulumi_kubernetes", "psycopg", "psutil", "yaml", "matplotlib")
CONTRACT_APIS = (shadow.ShadowActivities, cutover.CutoverActivities, outcomes.OutcomeActivities,
                 retraining.RetrainingActivities, watch.WatchActivities, protection.ProtectionApi)


def test_importing_the_workflows_package_imports_nothing_heavy() -> None:
    """A clean interpreter that imports every workflow has none of the heavy libraries loaded
    (the CLI, the sandbox and an operator's laptop import them in milliseconds)."""
    code = ("import sys, json, importlib, pkgutil, workflows\n"
            "for m in pkgutil.iter_modules(workflows.__path__):\n"
            "    importlib.import_module('workflows.' + m.name)\n"
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                                       capture_output=True, text=True).stdout)
    assert "workflows" in loaded and "contracts" in loaded  # the probe imported something
    assert sorted(set(loaded) & set(HEAVY)) == []


def test_import_contracts_hold() -> None:
    """import-linter's contracts (pyproject.toml): layers, light contracts and workflows,
    models without Temporal, no cycles."""
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def _names() -> set[str]:
    """Every activity, signal, update and query name ShadowShift defines."""
    names: set[str] = set()
    for api in CONTRACT_APIS:
        for name, member in inspect.getmembers(api):
            if name.startswith("_"):
                continue
            defined = any(hasattr(member, attribute) for attribute in (
                "__temporal_activity_definition", "__temporal_signal_definition",
                "__temporal_query_definition", "_defn"))  # _defn: an update's definition
            if defined:
                names.add(name)
    return names


def test_the_names_come_from_the_definitions() -> None:
    """The name set the next test looks for is real (it found the handlers and activities)."""
    names = _names()
    assert {"provision_shadow", "switch_over", "watch_fleet", "report_risk",
            "request_cutover", "status", "retrain_challenger"} <= names
    assert len(names) > 25


@pytest.mark.parametrize("package", ["workflows", "activities"])
def test_no_activity_or_message_is_named_by_a_string(package: str) -> None:
    """Workflows call activities and services send messages through their definitions, so a
    rename or a payload change is a type error: no string literal in workflows/ or
    activities/ equals an activity, signal, update or query name."""
    names = _names()
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_every_contract_activity_is_registered_by_the_worker() -> None:
    """Each activity a workflow can call has an implementation on every worker (registered by
    the contract's name), and the worker registers only the workflows it ships."""
    from workers import registry

    source = inspect.getsource(registry.build_activities) + inspect.getsource(
        registry.cutover_activities)
    for api in CONTRACT_APIS[:-1]:
        for name, member in inspect.getmembers(api):
            if hasattr(member, "__temporal_activity_definition"):
                assert f".{name}" in source, f"{api.__name__}.{name} is not registered"
    assert {w.__name__ for w in WORKFLOWS} == {
        "InstanceProtectionWorkflow", "FleetWatcherWorkflow", "CutoverWorkflow",
        "ModelRetrainingWorkflow", "ObserveOutcomesWorkflow", "HostTaskWorkflow"}
