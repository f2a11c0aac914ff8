"""AWS errors translated into :mod:`infra.errors`, so activities know what to retry.

=========================================  ===============================  ==========
AWS error code                             raised as                        retried?
=========================================  ===============================  ==========
AccessDenied, UnauthorizedOperation, ...   ``AwsPermissionError``           no
Throttling, RequestLimitExceeded, ...      ``AwsThrottledError``            yes
\\*.NotFound, NoSuchHostedZone, ...         ``InvalidRequestError``          no
anything else                              ``InfraError``                   yes
=========================================  ===============================  ==========

botocore already retries throttling with backoff (see :mod:`infra.aws.clients`); an
``AwsThrottledError`` means its attempts ran out and the activity's own retry should wait longer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from infra.errors import InfraError, InvalidRequestError

ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure"}
)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "PriorRequestNotComplete",
        "RequestThrottled",
        "SlowDown",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "InvalidInstanceID.Malformed",
        "InvalidSubnetID.NotFound",
        "InvalidSubnet.NotFound",
        "InvalidVolume.NotFound",
        "InvalidSnapshot.NotFound",
        "InvalidGroup.NotFound",
        "InvalidAMIID.NotFound",
        "NoSuchHostedZone",
        "InvalidInput",
        "ListenerNotFound",
        "TargetGroupNotFound",
        "LoadBalancerNotFound",
        "ValidationError",
    }
)

IAM_PREFIX = {"elbv2": "elasticloadbalancing", "monitoring": "cloudwatch"}
"""IAM action prefixes that differ from botocore's service names."""


class AwsPermissionError(InvalidRequestError):
    """The worker's IAM identity lacks a permission; the message names the action."""

    def __init__(self, action: str, detail: str) -> None:
        super().__init__(
            f"AWS denied {action}: grant the worker's role the IAM permission {action!r} "
            f"(see docs/aws/iam-policy.json). AWS said: {detail}"
        )
        self.action = action


class AwsThrottledError(InfraError):
    """AWS kept throttling after botocore's retries; retry later with backoff."""


def iam_action(service_name: str, operation_name: str) -> str:
    """The IAM action of a call, e.g. ``elasticloadbalancing:ModifyListener``."""
    return f"{IAM_PREFIX.get(service_name, service_name)}:{operation_name}"


def translate(err: ClientError, service_name: str, what: str = "") -> InfraError:
    """The :mod:`infra.errors` exception for a botocore ``ClientError``.

    Args:
        err: the error botocore raised.
        service_name: botocore's service name (``ec2``, ``elbv2``, ``route53``...).
        what: what was being looked at, e.g. ``spec.shadow_subnet_id 'subnet-1'``, so a
            not-found error names the field the user has to fix.
    """
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or str(err)
    action = iam_action(service_name, err.operation_name)
    if code in ACCESS_DENIED_CODES:
        return AwsPermissionError(action, message)
    if code in THROTTLING_CODES:
        return AwsThrottledError(f"AWS throttled {action} after retries: {message}")
    if code in NOT_FOUND_CODES or code.endswith(".NotFound") or code.endswith("NotFound"):
        subject = what or action
        return InvalidRequestError(f"{subject} does not exist or is malformed ({code}: {message})")
    return InfraError(f"{action} failed ({code}): {message}")


@contextmanager
def aws_errors(service_name: str, what: str = "") -> Iterator[None]:
    """Re-raise botocore errors of the block as :mod:`infra.errors` exceptions."""
    try:
        yield
    except ClientError as err:
        raise translate(err, service_name, what) from err
    except NoCredentialsError as err:
        raise InvalidRequestError(
            "no AWS credentials: give the worker an instance profile, a role or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        ) from err
    except BotoCoreError as err:
        # Connection failures, timeouts, missing credentials: nothing the request can fix.
        raise InfraError(f"AWS {service_name} call failed: {err}") from err
