"""CloudWatch readings and EC2 events against moto (moto invents no metrics: we put them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botocore.stub import Stubber

from infra.aws.clients import AwsClients
from infra.aws.events import instance_events
from infra.aws.metrics import CloudWatchMetricsCollector
from tests.infra.aws.conftest import World


def _put(
    clients: AwsClients, namespace: str, name: str, dims: dict[str, str], value: float, at: datetime
) -> None:
    clients.cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                "Value": value,
                "Timestamp": at,
            }
        ],
    )


def test_cloudwatch_reading_becomes_a_metric_sample(clients: AwsClients, world: World) -> None:
    """CPU, memory, network, status and EBS latency (time ÷ ops) land in the neutral sample."""
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    instance = {"InstanceId": world.primary_id}
    volume = {"VolumeId": world.data_volume_id}
    for name, value in [
        ("CPUUtilization", 87.5),
        ("NetworkIn", 1000.0),
        ("NetworkOut", 3000.0),
        ("StatusCheckFailed", 1.0),
    ]:
        _put(clients, "AWS/EC2", name, instance, value, at)
    _put(clients, "CWAgent", "mem_used_percent", instance, 61.0, at)
    for name, value in [
        ("VolumeTotalReadTime", 0.5),
        ("VolumeTotalWriteTime", 1.5),
        ("VolumeReadOps", 100.0),
        ("VolumeWriteOps", 300.0),
    ]:
        _put(clients, "AWS/EBS", name, volume, value, at)

    collector = CloudWatchMetricsCollector(
        clients.cloudwatch, "orders-db", world.primary_id, volume_ids=(world.data_volume_id,)
    )
    reading = collector.read()
    sample = reading.sample
    assert sample.instance_id == "orders-db"
    assert sample.cpu_percent == 87.5 and sample.memory_percent == 61.0
    assert sample.disk_latency_ms == 5.0  # (0.5 s + 1.5 s) / 400 ops
    assert sample.metric_values()["network_bytes"] == 4000.0
    assert reading.status_check_failed is True
    assert abs(sample.timestamp - at.timestamp()) < 61


def test_missing_metrics_stay_missing(clients: AwsClients, world: World) -> None:
    """Without the agent or EBS data the fields are None, never zero."""
    collector = CloudWatchMetricsCollector(
        clients.cloudwatch, "orders-db", world.primary_id, volume_ids=(world.data_volume_id,)
    )
    reading = collector.read()
    assert reading.sample.memory_percent is None and reading.sample.disk_latency_ms is None
    assert reading.status_check_failed is None


def test_moto_reports_no_scheduled_events(clients: AwsClients, world: World) -> None:
    """moto answers DescribeInstanceStatus with healthy checks and no events at all."""
    assert instance_events(clients.ec2, [world.primary_id]) == []


def test_scheduled_events_and_impaired_checks_become_events(clients: AwsClients) -> None:
    """AWS's event shapes (stubbed: moto cannot schedule events) map to report_event kinds."""
    not_before = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    response = {
        "InstanceStatuses": [
            {
                "InstanceId": "i-0123456789abcdef0",
                "Events": [
                    {
                        "InstanceEventId": "instance-event-1",
                        "Code": "instance-retirement",
                        "Description": "The instance is running on degraded hardware",
                        "NotBefore": not_before,
                    },
                    {
                        "InstanceEventId": "instance-event-2",
                        "Code": "system-reboot",
                        "Description": "[Completed] Scheduled reboot",
                        "NotBefore": not_before,
                    },
                ],
                "SystemStatus": {"Status": "impaired"},
                "InstanceStatus": {"Status": "ok"},
            }
        ]
    }
    with Stubber(clients.ec2) as stub:
        stub.add_response("describe_instance_status", response)
        events = instance_events(clients.ec2, ["i-0123456789abcdef0"])
    assert [(e.kind, e.risk) for e in events] == [
        ("instance-retirement", "high"),
        ("system-status-impaired", "high"),
    ]
    assert events[0].event_id == "instance-event-1"
    assert "degraded hardware" in events[0].detail and "2026-12-01 03:00" in events[0].detail
