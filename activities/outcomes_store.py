"""Durable history of cutovers and near misses, with their outcomes (SQLite in the state dir).

Every decision worth learning from becomes a *record*: a cutover that happened, a cutover
that was refused, or a near miss (the risk entered the band below the threshold and no
cutover followed). A record carries the metric window the decision was made on, so it can
become a training row, and the endpoint of the instance it is about (for a cutover: the
former primary), so its fate can be observed.

*Observations* are evidence about a record's instance after the decision (a probe of its
endpoint, or a report from the recovery path: rejoined healthy, retired as failed). Once the
record's horizon has passed, :meth:`OutcomeStore.resolve` turns the worst observation inside
``[at, at + horizon]`` into the outcome: ``failed`` > ``degraded`` > ``healthy``; none at all
gives ``unknown`` (kept, never used for training).

SQLite rather than an append-only file because records are written once and resolved later:
primary keys make every write idempotent (a retried activity inserts nothing twice) and a
transaction resolves a batch atomically. One short-lived connection per call keeps it safe
from the worker's activity threads.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.outcomes import KINDS, STATUSES

WINDOW_MAX_AGE_S = 900.0
"""A remembered window older than this at the record's time is not attached to it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, kind TEXT NOT NULL,
    at REAL NOT NULL, horizon_s REAL NOT NULL, readiness_score REAL,
    failure_probability REAL, reason TEXT NOT NULL, host TEXT, port INTEGER,
    window_json TEXT, outcome TEXT, resolved_at REAL,
    policy_decided INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS observations (
    record_id TEXT NOT NULL, at REAL NOT NULL, source TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (record_id, at, source));
CREATE TABLE IF NOT EXISTS windows (
    instance_id TEXT PRIMARY KEY, at REAL NOT NULL, window_json TEXT NOT NULL);
"""
_INSERTED = ("record_id", "instance_id", "kind", "at", "horizon_s", "readiness_score",
             "failure_probability", "reason", "host", "port", "window_json", "policy_decided")
"""The columns :meth:`OutcomeStore.add` writes (outcome and resolved_at come later)."""


@dataclass
class OutcomeRecord:
    """One cutover, refusal or near miss, and (once resolved) what became of the instance."""

    record_id: str
    """Unique and stable across retries, e.g. ``<workflow id>:<first run id>:cutover:<n>``."""
    instance_id: str
    """The protected instance."""
    kind: str
    """One of :data:`KINDS`."""
    at: float
    """Decision time, epoch seconds."""
    horizon_s: float
    """The outcome looks this far ahead of ``at`` (the model's horizon)."""
    readiness_score: float | None = None
    """Score at the decision."""
    failure_probability: float | None = None
    """Model probability at the decision."""
    reason: str = ""
    """One sentence."""
    host: str | None = None
    """Endpoint to observe (for a cutover: the former primary)."""
    port: int | None = None
    """Its port."""
    window: dict[str, Any] | None = None
    """Metric window at the decision: ``{"timestamps": [...], "values": {metric: [...]}}``."""
    outcome: str | None = None
    """``failed``, ``degraded``, ``healthy`` or ``unknown``; None until resolved."""
    resolved_at: float | None = None
    """When the outcome was decided."""
    policy_decided: bool = False
    """A cutover the policy made on the model's score (see ``RecordOutcomeInput``)."""


@dataclass(frozen=True)
class HistoryRecord:
    """A record and the evidence about it, as the failure-history term reads them."""

    record_id: str
    """The record."""
    instance_id: str
    """Its instance."""
    kind: str
    """``cutover``, ``refused`` or ``near_miss``."""
    at: float
    """Decision time."""
    horizon_s: float
    """Outcome window length."""
    outcome: str | None
    """The store's own resolution (worst status seen), or None while open."""
    policy_decided: bool
    """A cutover the policy made."""
    observations: list[tuple[str, str, float]]
    """``(source, status, at)`` of every observation, oldest first."""


class OutcomeStore:
    """Records, observations and recent windows in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        """The database file."""
        self._schema_ready = False  # created by the first call, not re-run on every one

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._schema_ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30.0)
        try:
            if not self._schema_ready:
                connection.executescript(_SCHEMA)  # idempotent if two threads race here
                _add_policy_column(connection)
                self._schema_ready = True
            with connection:  # one transaction, committed on success
                yield connection
        finally:
            connection.close()

    def add(self, record: OutcomeRecord) -> bool:
        """Insert ``record`` unless its id exists; attaches the instance's latest window when
        the record has none. Returns whether it was new."""
        if record.kind not in KINDS:
            raise ValueError(f"kind {record.kind!r}: use one of {', '.join(KINDS)}")
        with self._connect() as db:
            window = record.window
            if window is None:
                row = db.execute("SELECT at, window_json FROM windows WHERE instance_id = ?",
                                 (record.instance_id,)).fetchone()
                if row and record.at - WINDOW_MAX_AGE_S <= row[0] <= record.at + 60.0:
                    window = json.loads(row[1])
            cursor = db.execute(
                f"INSERT OR IGNORE INTO records ({', '.join(_INSERTED)}) "
                f"VALUES ({', '.join('?' * len(_INSERTED))})",
                (record.record_id, record.instance_id, record.kind, record.at, record.horizon_s,
                 record.readiness_score, record.failure_probability, record.reason,
                 record.host, record.port, json.dumps(window) if window else None,
                 int(record.policy_decided)),
            )
            return cursor.rowcount == 1

    def remember_window(self, instance_id: str, at: float, window: dict[str, Any]) -> None:
        """Keep the latest metric window of an instance, for records made without one."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO windows VALUES (?,?,?)",
                       (instance_id, at, json.dumps(window)))

    def has_recent(self, instance_id: str, kind: str, since: float) -> bool:
        """Whether a record of ``kind`` for the instance exists at or after ``since``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT 1 FROM records WHERE instance_id = ? AND kind = ? AND at >= ? LIMIT 1",
                (instance_id, kind, since)).fetchone()
            return row is not None

    def observe(self, record_id: str, at: float, status: str, source: str,
                detail: str = "") -> bool:
        """Add evidence about a record's instance; idempotent per (record, time, source)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r}: use one of {', '.join(STATUSES)}")
        with self._connect() as db:
            cursor = db.execute("INSERT OR IGNORE INTO observations VALUES (?,?,?,?,?)",
                                (record_id, at, source, status, detail))
            return cursor.rowcount == 1

    def stop_probing(self, record_id: str) -> None:
        """Probe the record's endpoint no more (the node was retired on purpose: a dead port
        from then on says nothing about its health)."""
        with self._connect() as db:
            db.execute("UPDATE records SET port = NULL WHERE record_id = ?", (record_id,))

    def probe_instance_at(self, instance_id: str, now: float, host: str | None,
                          port: int | None) -> int:
        """Point the probes of every open record of the instance at ``host:port`` (None:
        stop probing them); returns how many records changed."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE records SET host = ?, port = ? WHERE instance_id = ? AND outcome IS NULL"
                " AND at <= ? AND at + horizon_s > ?", (host, port, instance_id, now, now))
            return cursor.rowcount

    def pending(self, now: float) -> list[OutcomeRecord]:
        """Unresolved records whose horizon is still open at ``now``."""
        return self._select("WHERE outcome IS NULL AND at + horizon_s > ?", (now,))

    def get(self, record_id: str) -> OutcomeRecord | None:
        """One record by id."""
        found = self._select("WHERE record_id = ?", (record_id,))
        return found[0] if found else None

    def all(self) -> list[OutcomeRecord]:
        """Every record, oldest decision first."""
        return self._select("", ())

    def resolve(self, now: float) -> dict[str, int]:
        """Decide the outcome of every record whose horizon has passed; counts by outcome."""
        counts = {name: 0 for name in (*STATUSES, "unknown")}
        for record in self.resolve_due(now):
            counts[record.outcome or "unknown"] += 1
        return counts

    def resolve_due(self, now: float) -> list[OutcomeRecord]:
        """Decide the outcome of every record whose horizon has passed; returns exactly the
        records this call resolved (read and updated in one transaction, so two resolvers
        running at once never both count a record)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock before reading what is due
            due = self._rows(db, "WHERE outcome IS NULL AND at + horizon_s <= ?", (now,))
            for record in due:
                seen = {row[0] for row in db.execute(
                    "SELECT status FROM observations WHERE record_id = ? AND at BETWEEN ? AND ?",
                    (record.record_id, record.at, record.at + record.horizon_s))}
                record.outcome = next((s for s in reversed(STATUSES) if s in seen), "unknown")
                record.resolved_at = now
                db.execute("UPDATE records SET outcome = ?, resolved_at = ? WHERE record_id = ?",
                           (record.outcome, now, record.record_id))
        return due

    def history(self, since: float = 0.0,
                instance_ids: list[str] | None = None) -> list[HistoryRecord]:
        """Every record decided at or after ``since`` (of ``instance_ids``, or of all
        instances), oldest first, with the observations made about it: what the historical
        failure-rate term is computed from (``models.history.failure_rates`` after
        ``models.feedback.label_outcome``, which needs the observations' sources to tell
        evidence a cutover can bias from evidence it cannot)."""
        args: list[Any] = [since]
        condition = "{p}at >= ?"
        if instance_ids is not None:
            if not instance_ids:
                return []
            condition += f" AND {{p}}instance_id IN ({', '.join('?' * len(instance_ids))})"
            args += instance_ids
        with self._connect() as db:
            rows = db.execute(
                "SELECT record_id, instance_id, kind, at, horizon_s, outcome, policy_decided "
                f"FROM records WHERE {condition.format(p='')} ORDER BY at, record_id",
                args).fetchall()
            seen: dict[str, list[tuple[str, str, float]]] = {}
            for record_id, at, source, status in db.execute(
                    "SELECT o.record_id, o.at, o.source, o.status FROM observations o JOIN "
                    f"records r ON r.record_id = o.record_id WHERE {condition.format(p='r.')}",
                    args):
                seen.setdefault(record_id, []).append((source, status, at))
        return [HistoryRecord(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]),
                              sorted(seen.get(row[0], []), key=lambda o: o[2]))
                for row in rows]

    def _select(self, where: str, args: tuple[Any, ...]) -> list[OutcomeRecord]:
        with self._connect() as db:
            return self._rows(db, where, args)

    @staticmethod
    def _rows(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[OutcomeRecord]:
        rows = db.execute(
            "SELECT record_id, instance_id, kind, at, horizon_s, readiness_score, "
            "failure_probability, reason, host, port, window_json, outcome, resolved_at, "
            f"policy_decided FROM records {where} ORDER BY at, record_id", args).fetchall()
        return [
            OutcomeRecord(
                record_id=row[0], instance_id=row[1], kind=row[2], at=row[3], horizon_s=row[4],
                readiness_score=row[5], failure_probability=row[6], reason=row[7], host=row[8],
                port=row[9], window=json.loads(row[10]) if row[10] else None, outcome=row[11],
                resolved_at=row[12], policy_decided=bool(row[13]),
            )
            for row in rows
        ]


def _add_policy_column(db: sqlite3.Connection) -> None:
    """Upgrade a store made before ``policy_decided`` had its own column.

    Such a store marked a policy cutover only by its reason text (``readiness score <n>
    crossed the threshold``, what the protection wrote then); its records keep their meaning
    through the backfill below, which matches that text exactly as the old code did. Check,
    ``ALTER`` and backfill are one write transaction: workers opening the file at once
    upgrade it once, and none backfills records written after the upgrade.

    One-way: a worker from before the column writes all of a record's columns by position,
    which the upgraded table refuses, so upgrade every worker sharing a state dir together."""
    db.execute("BEGIN IMMEDIATE")  # the write lock first, so the check below stays true
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
        if "policy_decided" not in columns:
            db.create_function("is_policy_reason", 1, _is_policy_reason, deterministic=True)
            db.execute(
                "ALTER TABLE records ADD COLUMN policy_decided INTEGER NOT NULL DEFAULT 0")
            db.execute("UPDATE records SET policy_decided = 1 "
                       "WHERE kind = 'cutover' AND is_policy_reason(reason)")
        db.commit()
    except BaseException:
        db.rollback()
        raise


_POLICY_REASON = re.compile(r"readiness score -?\d+ crossed the threshold")
"""The reason the protection wrote for a policy cutover before ``policy_decided`` existed."""


def _is_policy_reason(reason: str) -> bool:
    return _POLICY_REASON.fullmatch(reason) is not None
