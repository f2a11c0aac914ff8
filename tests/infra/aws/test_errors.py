"""AWS errors become ours: denied → non-retryable naming the action, throttled → retryable."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from activities.errors import translated_errors
from infra.aws.errors import AwsPermissionError, AwsThrottledError, aws_errors, translate
from infra.errors import InfraError, InvalidRequestError
from tests.infra.aws.conftest import FAKE_CREDENTIALS, make_clients, moto_server


def _client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} says no"}}, operation)


def test_access_denied_names_the_missing_permission() -> None:
    """Both AccessDenied spellings map to a non-retryable error naming the IAM action."""
    for code, service, operation, action in [
        ("AccessDenied", "elbv2", "ModifyListener", "elasticloadbalancing:ModifyListener"),
        ("UnauthorizedOperation", "ec2", "StopInstances", "ec2:StopInstances"),
        ("AccessDenied", "route53", "ChangeResourceRecordSets", "route53:ChangeResourceRecordSets"),
    ]:
        error = translate(_client_error(code, operation), service)
        assert isinstance(error, AwsPermissionError) and isinstance(error, InvalidRequestError)
        assert error.action == action and action in str(error)


def test_throttling_is_retryable_and_not_found_is_not() -> None:
    """Throttling stays retryable after botocore's retries; a missing thing is not."""
    throttled = translate(_client_error("Throttling", "GetMetricData"), "cloudwatch")
    assert isinstance(throttled, AwsThrottledError) and not isinstance(
        throttled, InvalidRequestError
    )
    missing = translate(
        _client_error("ListenerNotFound", "DescribeListeners"), "elbv2", "alb.listener_arn"
    )
    assert isinstance(missing, InvalidRequestError) and "alb.listener_arn" in str(missing)
    other = translate(_client_error("InternalError", "DescribeInstances"), "ec2")
    assert type(other) is InfraError


def test_activities_see_the_right_retry_semantics() -> None:
    """Through ``translated_errors``: denied is non-retryable, throttled is retried."""
    from temporalio.exceptions import ApplicationError

    with pytest.raises(ApplicationError) as denied, translated_errors(), aws_errors("elbv2"):
        raise _client_error("AccessDenied", "ModifyListener")
    assert denied.value.non_retryable and denied.value.type == "InvalidRequest"
    with pytest.raises(ApplicationError) as throttled, translated_errors(), aws_errors("route53"):
        raise _client_error("PriorRequestNotComplete", "ChangeResourceRecordSets")
    assert not throttled.value.non_retryable


def test_clients_retry_adaptively() -> None:
    """botocore backs off on throttling before our error ever surfaces."""
    clients = make_clients("http://127.0.0.1:9")
    retries = clients.ec2.meta.config.retries
    assert retries["mode"] == "adaptive" and retries["total_max_attempts"] == 2


@pytest.fixture(scope="module")
def enforcing_moto() -> Iterator[str]:
    """A second moto server that enforces IAM (the shared one must stay permissive)."""
    with moto_server() as url:
        yield url


def _enable_auth(url: str, free_actions: int) -> None:
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=str(free_actions).encode(),
        headers={"Content-Type": "text/plain"},  # else Flask eats the body as a form
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()


def test_moto_enforced_access_denied(enforcing_moto: str) -> None:
    """A worker whose policy lacks elasticloadbalancing:ModifyListener gets told exactly that."""
    _enable_auth(enforcing_moto, 3)  # the next three calls set up a restricted identity
    iam = boto3.Session(region_name="eu-west-1", **FAKE_CREDENTIALS).client(
        "iam", endpoint_url=enforcing_moto
    )
    iam.create_user(UserName="worker")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="worker", PolicyName="narrow", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="worker")["AccessKey"]
    worker = make_clients(
        enforcing_moto,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    with aws_errors("ec2"):
        worker.ec2.describe_instances()  # allowed
    with pytest.raises(AwsPermissionError) as err, aws_errors("elbv2"):
        worker.elbv2.describe_listeners(
            ListenerArns=["arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/x/1/2"]
        )
    assert err.value.action == "elasticloadbalancing:DescribeListeners"
