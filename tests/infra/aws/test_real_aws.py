"""End to end against real AWS: read-only preflight and a weight round trip.

Runs only with ``-m aws_real``-worthy credentials and a spec naming real resources
(``SHADOWSHIFT_AWS_SPEC`` points at a YAML spec); otherwise it is skipped with the reason.
It sets the shadow's weight to its current value, so it changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from infra.aws.clients import AwsClients, AwsConnectionConfig
from infra.aws.platform import AwsPlatform
from infra.aws.spec_loader import load_spec_file

pytestmark = pytest.mark.aws_real


def test_real_aws_preflight_and_weights() -> None:
    """Preflight passes and writing the current weights back is a no-op."""
    if boto3.Session().get_credentials() is None:
        pytest.skip("no AWS credentials in the environment (aws_real)")
    spec_path = os.environ.get("SHADOWSHIFT_AWS_SPEC")
    if not spec_path:
        pytest.skip("SHADOWSHIFT_AWS_SPEC is not set: it names a YAML spec of real resources")
    spec = load_spec_file(Path(spec_path))
    platform = AwsPlatform(spec, AwsClients(AwsConnectionConfig(region=spec.region)), None)
    facts = platform.preflight()
    assert facts.placement.availability_zone != facts.primary.availability_zone
    weights = platform.get_weights()
    platform.set_weights(weights)
    assert platform.get_weights() == weights
