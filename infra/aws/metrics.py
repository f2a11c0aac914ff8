"""CloudWatch readings of an EC2 instance as platform-neutral :class:`MetricSample`s.

One ``GetMetricData`` call per reading fetches, for the last few periods:

- ``AWS/EC2`` CPUUtilization (average %), NetworkIn/NetworkOut (bytes per period),
  StatusCheckFailed (maximum; a health flag, reported beside the sample, not inside it);
- ``AWS/EBS`` VolumeTotalReadTime/VolumeTotalWriteTime (seconds) and VolumeReadOps/
  VolumeWriteOps per data volume: mean latency = total time ÷ operations;
- memory, only if the CloudWatch agent publishes it (``CWAgent`` ``mem_used_percent`` with an
  ``InstanceId`` dimension); EC2 itself cannot see inside the guest;
- disk space, for the exhaustion forecast, only if the agent publishes it (``CWAgent``
  ``disk_used_percent``; its dimensions name the filesystem, so each one to watch is given in
  ``disk_dimensions``); the fullest filesystem is reported.

Basic monitoring publishes every 5 minutes, detailed monitoring every minute; ``period_s``
must match what the instance has, or every query comes back empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.aws.errors import aws_errors
from models.metrics import MetricSample


@dataclass(frozen=True)
class CloudWatchReading:
    """One reading: the model's sample plus what is not a model feature."""

    sample: MetricSample
    """CPU, memory, disk latency and network, whichever CloudWatch had."""
    status_check_failed: bool | None
    """Whether an EC2 status check failed in the window; ``None`` without data."""
    raw: dict[str, float] = field(default_factory=dict)
    """Latest value per query id, for troubleshooting."""


class CloudWatchMetricsCollector:
    """Reads one instance's metrics; safe to call at any interval (it keeps no state)."""

    def __init__(
        self,
        cloudwatch: Any,
        instance_id: str,
        ec2_instance_id: str,
        *,
        volume_ids: tuple[str, ...] = (),
        period_s: int = 60,
        lookback_periods: int = 5,
        memory_namespace: str = "CWAgent",
        memory_metric: str = "mem_used_percent",
        id_prefix: str = "",
        disk_dimensions: tuple[dict[str, str], ...] = (),
    ) -> None:
        self._cloudwatch = cloudwatch
        self._instance_id = instance_id
        self._ec2_instance_id = ec2_instance_id
        self._volume_ids = volume_ids
        self._period_s = period_s
        self._lookback = timedelta(seconds=period_s * lookback_periods)
        self._memory = (memory_namespace, memory_metric)
        # Each filesystem's full dimension set as the agent publishes it, e.g.
        # {"InstanceId": "i-…", "path": "/", "device": "nvme0n1p1", "fstype": "xfs"}.
        self._disk_dimensions = disk_dimensions
        # Query ids must be unique within one GetMetricData call: a prefix per instance lets
        # the fleet watcher batch many instances' queries (see :func:`read_many`).
        self.id_prefix = id_prefix

    def queries(self) -> list[dict[str, Any]]:
        """The ``MetricDataQueries`` of one reading."""
        by_instance = [{"Name": "InstanceId", "Value": self._ec2_instance_id}]
        wanted = [
            ("cpu", "AWS/EC2", "CPUUtilization", "Average", by_instance),
            ("status", "AWS/EC2", "StatusCheckFailed", "Maximum", by_instance),
            ("netin", "AWS/EC2", "NetworkIn", "Sum", by_instance),
            ("netout", "AWS/EC2", "NetworkOut", "Sum", by_instance),
            ("mem", *self._memory, "Average", by_instance),
        ]
        for index, dimensions in enumerate(self._disk_dimensions):
            dims = [{"Name": k, "Value": v} for k, v in sorted(dimensions.items())]
            wanted.append((f"disk{index}", self._memory[0], "disk_used_percent", "Average",
                           dims))
        for index, volume_id in enumerate(self._volume_ids):
            by_volume = [{"Name": "VolumeId", "Value": volume_id}]
            for prefix, metric in _EBS_METRICS.items():
                wanted.append((f"{prefix}{index}", "AWS/EBS", metric, "Sum", by_volume))
        return [
            {
                "Id": f"{self.id_prefix}{query_id}",
                "MetricStat": {
                    "Metric": {"Namespace": ns, "MetricName": name, "Dimensions": dims},
                    "Period": self._period_s,
                    "Stat": stat,
                },
                "ReturnData": True,
            }
            for query_id, ns, name, stat, dims in wanted
        ]

    def read(self, now: datetime | None = None) -> CloudWatchReading:
        """The latest value of every metric within the look-back window."""
        end = now or datetime.now(UTC)
        with aws_errors("cloudwatch"):
            results = self._cloudwatch.get_metric_data(
                MetricDataQueries=self.queries(),
                StartTime=end - self._lookback,
                EndTime=end,
                ScanBy="TimestampDescending",
            )["MetricDataResults"]
        return self.reading_from(results, end)

    def reading_from(self, results: list[dict[str, Any]], end: datetime) -> CloudWatchReading:
        """The reading at time ``end`` in the ``MetricDataResults`` of this collector's queries
        (both callers pass only those)."""
        series = {
            r["Id"].removeprefix(self.id_prefix): dict(
                zip(r["Timestamps"], r["Values"], strict=True))
            for r in results
        }
        latest = {qid: points[max(points)] for qid, points in series.items() if points}
        stamps = [max(points) for points in series.values() if points]
        timestamp = max(stamps).timestamp() if stamps else end.timestamp()
        status = latest.get("status")
        sample = MetricSample(
            timestamp=timestamp,
            instance_id=self._instance_id,
            cpu_percent=latest.get("cpu"),
            memory_percent=latest.get("mem"),
            disk_latency_ms=self._disk_latency_ms(series),
            network_in_bytes=latest.get("netin"),
            network_out_bytes=latest.get("netout"),
            disk_used_percent=max((latest[f"disk{i}"] for i in range(len(self._disk_dimensions))
                                   if f"disk{i}" in latest), default=None),
        )
        return CloudWatchReading(sample, None if status is None else status > 0, latest)

    def _disk_latency_ms(self, series: dict[str, dict[datetime, float]]) -> float | None:
        """Mean I/O latency over every data volume at each one's newest complete period."""
        busy_s = ops = 0.0
        for index in range(len(self._volume_ids)):
            parts = [series.get(f"{prefix}{index}", {}) for prefix in _EBS_METRICS]
            common = set.intersection(*(set(p) for p in parts))
            if not common:
                continue  # a period without all four numbers would give a wrong ratio
            at = max(common)
            read_s, write_s, read_ops, write_ops = (p[at] for p in parts)
            busy_s += read_s + write_s
            ops += read_ops + write_ops
        if ops <= 0:
            return None
        return busy_s / ops * 1000.0


def read_many(
    cloudwatch: Any, collectors: list[CloudWatchMetricsCollector], now: datetime | None = None
) -> list[CloudWatchReading]:
    """One reading per collector from as few ``GetMetricData`` calls as possible (500
    queries per call, the API's limit; collectors need distinct ``id_prefix``es of the form
    ``q12_``). CloudWatch bills per metric requested, not per call, so batching saves API
    calls and latency, not money."""
    end = now or datetime.now(UTC)
    if len({c.id_prefix for c in collectors}) != len(collectors) or not all(
        _PREFIX.match(c.id_prefix) for c in collectors
    ):
        raise ValueError("read_many needs one distinct id_prefix like 'q12_' per collector")
    batches: list[list[dict[str, Any]]] = [[]]
    for collector in collectors:  # a collector's queries never straddle two calls
        queries = collector.queries()
        if len(batches[-1]) + len(queries) > _MAX_QUERIES:
            batches.append([])
        batches[-1].extend(queries)
    results: dict[str, dict[str, Any]] = {}
    lookback = max((c._lookback for c in collectors), default=timedelta(0))
    for batch in filter(None, batches):
        with aws_errors("cloudwatch"):
            pages = cloudwatch.get_paginator("get_metric_data").paginate(
                MetricDataQueries=batch, StartTime=end - lookback, EndTime=end,
                ScanBy="TimestampDescending",
            )
            for page in pages:  # a long series continues on the next page
                for result in page["MetricDataResults"]:
                    merged = results.setdefault(
                        result["Id"], {"Id": result["Id"], "Timestamps": [], "Values": []})
                    merged["Timestamps"].extend(result["Timestamps"])
                    merged["Values"].extend(result["Values"])
    by_prefix: dict[str, list[dict[str, Any]]] = {}
    for result in results.values():
        by_prefix.setdefault(result["Id"].split("_", 1)[0] + "_", []).append(result)
    return [c.reading_from(by_prefix.get(c.id_prefix, []), end) for c in collectors]


_PREFIX = re.compile(r"^[a-z][a-z0-9]*_$")
_MAX_QUERIES = 500
"""``MetricDataQueries`` per ``GetMetricData`` call (the API's limit)."""

_EBS_METRICS = {
    "rt": "VolumeTotalReadTime",
    "wt": "VolumeTotalWriteTime",
    "ro": "VolumeReadOps",
    "wo": "VolumeWriteOps",
}
