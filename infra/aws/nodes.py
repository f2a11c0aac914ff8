"""Which EC2 instance serves each router node, and where its application listens.

The primary is the spec's ``ec2_instance_id``; the shadow is found by its ``shadowshift:node``
tag (so a shadow whose stack state was lost is still found). The application address is the
instance's private IP, unless the instance carries a ``shadowshift:endpoint`` tag
(``host[:port]``): the way in when the worker reaches the database through a tunnel, a proxy or
a port forward instead of the VPC, and how the moto tests point an emulated instance at a real
local PostgreSQL.
"""

from __future__ import annotations

from infra.aws.clients import AwsClients
from infra.aws.discovery import describe_instance, find_node_instance
from infra.aws.spec import AwsShadowSpec
from infra.errors import InvalidRequestError

ENDPOINT_TAG = "shadowshift:endpoint"
"""Tag overriding where the worker reaches an instance's application (``host[:port]``)."""


class NodeDirectory:
    """Node name → EC2 instance id and application address, looked up once per object.

    Ids and addresses do not change while a platform object lives (one activity attempt):
    an instance keeps its private IP across stop and start.
    """

    def __init__(self, spec: AwsShadowSpec, clients: AwsClients) -> None:
        self._spec = spec
        self._clients = clients
        self._ids: dict[str, str] = {}
        self._addresses: dict[str, str] = {}

    def find_ec2_id(self, node: str) -> str | None:
        """The instance serving ``node``; ``None`` when the shadow does not exist (yet)."""
        if node in self._ids:
            return self._ids[node]
        if node == self._spec.primary_node:
            found: str | None = self._spec.ec2_instance_id
        elif node == self._spec.shadow_node:
            instance = find_node_instance(self._clients, node)
            found = str(instance["InstanceId"]) if instance is not None else None
        else:
            raise InvalidRequestError(f"unknown node {node!r}; nodes are {self._spec.nodes}")
        if found is not None:
            self._ids[node] = found
        return found

    def ec2_id(self, node: str) -> str:
        """Like :meth:`find_ec2_id`, but a missing instance is an error naming the fix."""
        ec2_id = self.find_ec2_id(node)
        if ec2_id is None:
            raise InvalidRequestError(f"{node} has no EC2 instance; provision the shadow first")
        return ec2_id

    def address(self, node: str) -> str:
        """Where the worker reaches ``node``'s application: endpoint tag, else private IP."""
        if node not in self._addresses:
            ec2_id = self.ec2_id(node)
            instance = describe_instance(self._clients, ec2_id, f"instance {ec2_id!r} of {node}")
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            self._addresses[node] = tags.get(ENDPOINT_TAG) or str(instance["PrivateIpAddress"])
        return self._addresses[node]

    def ip(self, node: str, public: bool = False) -> str | None:
        """The instance's private (or public) IPv4 address, as DNS records hold it."""
        ec2_id = self.ec2_id(node)
        instance = describe_instance(self._clients, ec2_id, f"instance {ec2_id!r} of {node}")
        value = instance.get("PublicIpAddress" if public else "PrivateIpAddress")
        return str(value) if value else None
