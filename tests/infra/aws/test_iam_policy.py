"""The IAM policy in docs/aws/iam-policy.json grants exactly what the worker's AWS code calls:
every boto3 call in ``infra/aws`` (read from the source, paginators and waiters included) is
allowed, and every allowed action is either such a call or one the Pulumi AWS provider makes
for the shadow stack (listed below with the resource it serves), so the policy can neither
miss a permission nor grow a stale one unnoticed."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[3]
POLICY = REPO / "docs" / "aws" / "iam-policy.json"
AWS_CODE = REPO / "infra" / "aws"

IAM_PREFIX = {"ec2": "ec2", "elbv2": "elasticloadbalancing", "route53": "route53",
              "cloudwatch": "cloudwatch"}
"""boto3 client attribute (``AwsClients.ec2``...) → IAM service prefix."""

PULUMI_PROVIDER_ACTIONS = {
    # aws.ec2.Instance (the shadow): create, read back, tag, terminate.
    "ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstanceAttribute",
    "ec2:DescribeInstanceTypes", "ec2:DescribeInstanceCreditSpecifications",
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs",
    # aws.ebs.Volume and aws.ec2.VolumeAttachment (the shadow's data volume).
    "ec2:CreateVolume", "ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume",
    "ec2:DescribeVolumesModifications",
    # aws.lb.TargetGroupAttachment (the shadow in its target group).
    "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:DescribeTags",
}
"""Actions the policy grants only for the Pulumi program (infra/aws/program.py), which calls
AWS through the provider, not through boto3; each line says which resource needs them. (The
weighted records' Route 53 calls and the snapshot reads are boto3 calls too.)"""


def _policy_actions() -> set[str]:
    document = json.loads(POLICY.read_text())
    actions: set[str] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow", statement
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def _receiver(node: ast.expr) -> str | None:
    """``ec2`` for ``ec2.x``, ``clients.ec2.x``, ``self._ec2.x``; else ``None`` (also for
    ``aws.ec2.Instance``: the Pulumi provider's resources, not boto3)."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
            node.value.id == "aws"):
        return None
    name = node.attr if isinstance(node, ast.Attribute) else (
        node.id if isinstance(node, ast.Name) else None)
    name = name.lstrip("_") if name else None
    return name if name in IAM_PREFIX else None


def _calls() -> Iterator[tuple[str, str, str]]:
    """(client, kind, name) for every boto3 call in infra/aws: kind ``method``,
    ``paginator`` or ``waiter``; a waiter name passed through a helper's parameter is found
    at the helper's call sites."""
    for path in sorted(AWS_CODE.glob("*.py")):
        tree = ast.parse(path.read_text())
        helpers: dict[str, str] = {}  # helper function → client of the waiter it gets
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                client = _receiver(node.func.value)
                if client is None:
                    continue
                method = node.func.attr
                if method in ("get_paginator", "get_waiter"):
                    kind = "paginator" if method == "get_paginator" else "waiter"
                    argument = node.args[0]
                    if isinstance(argument, ast.Constant):
                        yield client, kind, str(argument.value)
                    else:
                        helpers[function.name] = client
                else:
                    yield client, "method", method
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in helpers and node.args
                    and isinstance(node.args[0], ast.Constant)):
                yield helpers[node.func.attr], "waiter", str(node.args[0].value)


def _code_actions() -> dict[str, str]:
    """IAM action → where it comes from, for every boto3 call in infra/aws."""
    clients = {name: boto3.client(name, region_name="us-east-1", aws_access_key_id="x",
                                  aws_secret_access_key="x") for name in IAM_PREFIX}
    found: dict[str, str] = {}
    for client_name, kind, name in _calls():
        client = clients[client_name]
        if kind == "waiter":
            operation = client.get_waiter(name).config.operation
        else:
            operation = client.meta.method_to_api_mapping[name]
        found[f"{IAM_PREFIX[client_name]}:{operation}"] = f"{client_name} {kind} {name}"
    return found


@pytest.fixture(scope="module")
def code_actions() -> dict[str, str]:
    """The actions the code needs (scanned once)."""
    return _code_actions()


def test_the_scan_finds_the_calls_it_must(code_actions: dict[str, str]) -> None:
    """A sanity check of the scanner: calls of each kind are found (a scanner that found
    nothing would pass the comparison below)."""
    assert code_actions["ec2:StopInstances"] == "ec2 method stop_instances"
    assert code_actions["ec2:DescribeInstanceStatus"].startswith("ec2 paginator")
    assert "ec2:DescribeInstances" in code_actions  # via the instance_stopped waiter too
    assert "elasticloadbalancing:ModifyListener" in code_actions
    assert "cloudwatch:GetMetricData" in code_actions


def test_every_call_the_code_makes_is_allowed(code_actions: dict[str, str]) -> None:
    """No boto3 call in infra/aws lacks its action in the policy."""
    missing = {action: where for action, where in code_actions.items()
               if action not in _policy_actions()}
    assert not missing, f"add to docs/aws/iam-policy.json: {missing}"


def test_the_policy_grants_nothing_unexplained(code_actions: dict[str, str]) -> None:
    """Every action granted is a boto3 call or one the Pulumi provider needs (listed with
    its resource above): a permission nobody uses is removed, not kept."""
    unexplained = _policy_actions() - set(code_actions) - PULUMI_PROVIDER_ACTIONS
    assert not unexplained, f"nothing calls these; remove them or say who does: {unexplained}"


def test_destructive_actions_are_limited_to_tagged_instances() -> None:
    """Stop, start, terminate and volume deletion apply only to resources carrying the
    ``shadowshift:role`` tag, never to any instance of the account."""
    document = json.loads(POLICY.read_text())
    destructive = {"ec2:StopInstances", "ec2:StartInstances", "ec2:TerminateInstances",
                   "ec2:DeleteVolume"}
    for statement in document["Statement"]:
        granted = set(statement["Action"]) & destructive
        if granted:
            condition = json.dumps(statement.get("Condition", {}))
            assert "aws:ResourceTag/shadowshift:role" in condition, statement["Sid"]
