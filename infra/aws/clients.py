"""boto3 clients for one region, with botocore's adaptive retries against throttling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config


@dataclass(frozen=True, kw_only=True)
class AwsConnectionConfig:
    """How the worker reaches AWS (or an emulator)."""

    region: str
    """Region of the protected instance."""
    endpoint_url: str | None = None
    """Override for every service, e.g. a ``moto_server`` at ``http://127.0.0.1:5000``."""
    profile_name: str | None = None
    """Named profile; ``None`` uses the default credential chain (instance profile, env...)."""
    max_attempts: int = 8
    """Attempts per call, first included, before a throttling error surfaces."""
    retry_mode: str = "adaptive"
    """botocore retry mode: ``adaptive`` also rate-limits the client after throttling."""
    connect_timeout_s: float = 5.0
    """TCP connect timeout per attempt."""
    read_timeout_s: float = 20.0
    """Read timeout per attempt."""


class AwsClients:
    """The four clients the AWS platform uses, created once and shared (they are thread-safe)."""

    def __init__(self, config: AwsConnectionConfig, session: boto3.Session | None = None) -> None:
        self.config = config
        self._session = session or boto3.Session(
            profile_name=config.profile_name, region_name=config.region
        )
        botocore_config = Config(
            region_name=config.region,
            retries={"mode": config.retry_mode, "total_max_attempts": config.max_attempts},
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
        )
        self.ec2: Any = self._client("ec2", botocore_config)
        """EC2: instances, volumes, snapshots, subnets, status and events."""
        self.elbv2: Any = self._client("elbv2", botocore_config)
        """Elastic Load Balancing v2: listeners and target groups."""
        self.route53: Any = self._client("route53", botocore_config)
        """Route 53: hosted zones and weighted record sets."""
        self.cloudwatch: Any = self._client("cloudwatch", botocore_config)
        """CloudWatch: metric data."""

    def _client(self, service: str, config: Config) -> Any:
        return self._session.client(service, endpoint_url=self.config.endpoint_url, config=config)
