"""The ``--columns`` shorthand and column keys."""

from __future__ import annotations

import pytest

from models.columns import ColumnSpecError, parse_columns
from models.metrics import column_kind, ordered_columns


def test_range_with_kind() -> None:
    """``m01..m19:other`` names nineteen columns, each its own ``other`` key."""
    pairs = parse_columns("m01..m19:other")
    assert [c for c, _ in pairs] == [f"m{i:02d}" for i in range(1, 20)]
    assert pairs[0] == ("m01", "other:m01") and pairs[-1] == ("m19", "other:m19")


def test_single_columns_keep_bare_kinds() -> None:
    """A kind given once stays bare (the canonical metric); repeated kinds get labels;
    the kind defaults to other."""
    assert parse_columns("cpu:cpu, mem:memory, x") == [
        ("cpu", "cpu_percent"), ("mem", "memory_percent"), ("x", "other")]
    assert parse_columns("a:disk_used,b:disk_used") == [
        ("a", "disk_used_percent:a"), ("b", "disk_used_percent:b")]


def test_patterns_need_the_header() -> None:
    """``m*`` matches header columns in header order."""
    assert [c for c, _ in parse_columns("m*", ["timestamp", "m2", "m1", "x"])] == ["m2", "m1"]
    with pytest.raises(ColumnSpecError, match="header"):
        parse_columns("m*")


@pytest.mark.parametrize(("spec", "message"), [
    ("m05..m01", "backwards"),
    ("a1..b3", "same prefix"),
    ("x:bogus", "unknown metric kind"),
    ("a,a", "more than once"),
    (" , ", "names no column"),
    ("m1..m99999", "at most"),
])
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    """Each mistake raises one line naming it."""
    with pytest.raises(ColumnSpecError, match=message):
        parse_columns(spec)


def test_column_keys() -> None:
    """Kinds parse from keys; ordering puts named kinds first, by kind, stably."""
    assert column_kind("other:m07") == "other" and column_kind("cpu_percent") == "cpu_percent"
    with pytest.raises(KeyError):
        column_kind("cpu_percent:")
    assert ordered_columns(["other:b", "cpu_percent", "other:a", "memory_percent"]) == [
        "cpu_percent", "memory_percent", "other:b", "other:a"]
