"""A write workload through the router and a checker of acknowledged commits.

The writer commits single-row transactions with increasing ids through HAProxy and records
each id only once PostgreSQL acknowledged the COMMIT. The checker then asks any server which
of those ids it holds. "No acknowledged write lost" means: every recorded id is present.

Failed operations (connection refused, read-only, reset) are counted and retried after a
short pause on a fresh connection, as a real client with a 10 ms retry loop would.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg

from infra.local.postgres import PgEndpoint

TABLE = "shadowshift_workload"


@dataclass
class WorkloadStats:
    """What the writer observed."""

    acked_ids: list[int] = field(default_factory=list)
    """Ids whose COMMIT was acknowledged, in order."""
    ack_times: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each acknowledgement."""
    commit_latencies_ms: list[float] = field(default_factory=list)
    """Latency of each acknowledged INSERT+COMMIT."""
    failed_ops: int = 0
    """Attempts that raised (each is retried with a new id)."""
    failure_times: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each failure."""


def prepare_table(endpoint: PgEndpoint) -> None:
    """Create the workload table on the primary (idempotent)."""
    with endpoint.connect() as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} "
            "(id bigint PRIMARY KEY, written_at timestamptz DEFAULT now(), payload text)"
        )


class Writer:
    """Background writer through ``endpoint`` at up to ``rate`` transactions per second."""

    def __init__(
        self,
        endpoint: PgEndpoint,
        *,
        rate: float = 150.0,
        retry_interval_s: float = 0.01,
        payload_bytes: int = 64,
        first_id: int = 1,
    ) -> None:
        self.endpoint = endpoint
        self.rate = rate
        self.retry_interval_s = retry_interval_s
        self.payload = "x" * payload_bytes
        self.stats = WorkloadStats()
        self._next_id = first_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload-writer", daemon=True)

    def start(self) -> Writer:
        """Start writing in the background."""
        self._thread.start()
        return self

    def stop(self) -> WorkloadStats:
        """Stop and return what was observed."""
        self._stop.set()
        self._thread.join(timeout=30)
        return self.stats

    def __enter__(self) -> Writer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        conn: psycopg.Connection | None = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_at:
                time.sleep(min(next_at - now, 0.01))
                continue
            next_at = max(next_at + interval, now - 1.0)
            row_id = self._next_id
            self._next_id += 1
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = self.endpoint.connect(timeout_s=2, autocommit=True)
                conn.execute(
                    f"INSERT INTO {TABLE} (id, payload) VALUES (%s, %s)", (row_id, self.payload)
                )
            except psycopg.Error:
                self.stats.failed_ops += 1
                self.stats.failure_times.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(self.retry_interval_s)
                continue
            acked = time.monotonic()
            self.stats.acked_ids.append(row_id)
            self.stats.ack_times.append(acked)
            self.stats.commit_latencies_ms.append((acked - started) * 1000)
        if conn is not None:
            conn.close()


def missing_acked(endpoint: PgEndpoint, acked_ids: list[int]) -> list[int]:
    """Acknowledged ids that ``endpoint``'s server does not hold."""
    if not acked_ids:
        return []
    with endpoint.connect() as conn:
        present = {
            row[0]
            for row in conn.execute(
                f"SELECT id FROM {TABLE} WHERE id = ANY(%s)", (acked_ids,)
            ).fetchall()
        }
    return [row_id for row_id in acked_ids if row_id not in present]


def wait_until_present(
    endpoint: PgEndpoint, acked_ids: list[int], *, timeout_s: float = 60.0
) -> list[int]:
    """Poll until every acked id is on ``endpoint`` (for async tiers); returns the missing."""
    deadline = time.monotonic() + timeout_s
    missing = missing_acked(endpoint, acked_ids)
    while missing and time.monotonic() < deadline:
        time.sleep(0.2)
        missing = missing_acked(endpoint, missing)
    return missing
