"""The ``--columns`` shorthand: which CSV columns to score, and what kind of metric each is.

Grammar (items separated by commas, whitespace ignored)::

    ITEM    := NAMES [":" KIND]
    NAMES   := NAME | FIRST ".." LAST | PATTERN
    KIND    := a short kind (cpu, memory, disk_latency, other, ...) or a canonical metric name

- ``m01..m19:other`` — a range: both ends share a prefix and end in numbers; the width of the
  first end's number is kept (``m01``, ``m02``, …, ``m19``).
- ``cpu:cpu,mem:memory`` — single columns with their kinds.
- ``m*`` — a shell-style pattern, matched against the file's header in header order.
- The kind defaults to ``other``.

Each column becomes one column key (:func:`models.metrics.column_kind`): the bare kind when it
is the only column of its kind, ``<kind>:<column>`` otherwise, so ``other`` may repeat and a
second disk keeps its name.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Sequence

from models.metrics import METRICS

SHORT_KINDS = {
    "cpu": "cpu_percent",
    "memory": "memory_percent",
    "disk_latency": "disk_latency_ms",
    "network": "network_bytes",
    "request_latency": "request_latency_ms",
    "requests": "requests_per_second",
    "error_rate": "error_rate",
    "replication_lag": "replication_lag_bytes",
    "restarts": "restarts",
    "disk_used": "disk_used_percent",
    "connections": "connections_percent",
    "xid_age": "xid_age_percent",
    "wal_retained": "wal_retained_percent",
    "other": "other",
}
"""Short kind names accepted on the command line → canonical names (canonical names work too)."""

MAX_COLUMNS = 1024
"""More value columns than this is not a metric trace (and would not fit a window in memory
at fleet scale); refused with a clear error."""

_RANGE = re.compile(r"^(?P<first>.+?)\.\.(?P<last>.+)$")
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")


class ColumnSpecError(ValueError):
    """The ``--columns`` text cannot be understood; the message is one line."""


def canonical_kind(kind: str) -> str:
    """A short or canonical kind name → canonical name.

    Raises:
        ColumnSpecError: not a known kind.
    """
    name = SHORT_KINDS.get(kind, kind)
    if name not in METRICS:
        raise ColumnSpecError(f"unknown metric kind {kind!r}; use one of "
                              f"{', '.join(SHORT_KINDS)}")
    return name


def expand_range(first: str, last: str) -> list[str]:
    """``m01``, ``m19`` → ``m01 … m19``.

    Raises:
        ColumnSpecError: the ends do not share a prefix, do not end in numbers, or run
            backwards.
    """
    a, b = _NUMBERED.match(first), _NUMBERED.match(last)
    if a is None or b is None or a["prefix"] != b["prefix"]:
        raise ColumnSpecError(f"range {first}..{last}: both ends need the same prefix and a "
                              "number at the end (like m01..m19)")
    low, high = int(a["number"]), int(b["number"])
    if high < low:
        raise ColumnSpecError(f"range {first}..{last} runs backwards")
    if high - low + 1 > MAX_COLUMNS:
        raise ColumnSpecError(f"range {first}..{last} names {high - low + 1} columns; at most "
                              f"{MAX_COLUMNS} can be scored")
    width = len(a["number"])
    return [f"{a['prefix']}{n:0{width}d}" for n in range(low, high + 1)]


def parse_columns(spec: str, header: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Parse ``spec`` into ``(CSV column, column key)`` pairs, in the order given.

    Args:
        spec: the ``--columns`` text.
        header: the file's column names, for patterns (``m*``); ``None`` refuses patterns.

    Raises:
        ColumnSpecError: unparsable text, an unknown kind, a column named twice, a pattern
            that matches nothing.
    """
    pairs: list[tuple[str, str]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        names_text, colon, kind_text = item.rpartition(":")
        if not colon:
            names_text, kind_text = item, "other"
        names_text = names_text.strip()
        if not names_text:
            raise ColumnSpecError(f"--columns item {item!r} names no column")
        kind = canonical_kind(kind_text.strip())
        pairs += [(name, kind) for name in _names(names_text, header)]
    if not pairs:
        raise ColumnSpecError("--columns names no column")
    seen = Counter(name for name, _ in pairs)
    twice = [name for name, count in seen.items() if count > 1]
    if twice:
        raise ColumnSpecError(f"column {twice[0]!r} is named more than once in --columns")
    return keyed(pairs)


def keyed(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(column, kind)`` pairs → ``(column, column key)``: the bare kind for the only column of
    a kind, ``kind:column`` when the kind repeats."""
    counts = Counter(kind for _, kind in pairs)
    return [(name, kind if counts[kind] == 1 else f"{kind}:{name}") for name, kind in pairs]


def _names(text: str, header: Sequence[str] | None) -> list[str]:
    match = _RANGE.match(text)
    if match:
        return expand_range(match["first"].strip(), match["last"].strip())
    if any(ch in text for ch in "*?["):
        if header is None:
            raise ColumnSpecError(f"pattern {text!r} needs the file's header")
        found = [name for name in header if fnmatch.fnmatchcase(name, text)]
        if not found:
            raise ColumnSpecError(f"pattern {text!r} matches no column of the file")
        return found
    return [text]
