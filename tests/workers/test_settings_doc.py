"""The docs' configuration reference and metric table match the code they describe."""

from __future__ import annotations

import re

import pytest

from infra.observability import METRICS
from workers import settings_doc
from workers.settings import KNOWN_VARIABLES, REPO_ROOT

OPERATIONS = REPO_ROOT / "docs" / "operations.md"
OBSERVABILITY = REPO_ROOT / "docs" / "observability.md"


def test_settings_table_is_the_generated_one() -> None:
    """The block in docs/operations.md is exactly what settings.py generates today
    (regenerate with `python -m workers.settings_doc --write docs/operations.md`)."""
    text = OPERATIONS.read_text()
    assert settings_doc.replace_block(text) == text, (
        "docs/operations.md's configuration reference is stale: run "
        "`python -m workers.settings_doc --write docs/operations.md`"
    )


def test_every_variable_has_one_row_with_its_default() -> None:
    """One row per variable the loader accepts, in the same order, with the field's default."""
    rows = settings_doc.rows()
    assert [r.variable for r in rows] == list(KNOWN_VARIABLES)
    by_variable = {r.variable: r for r in rows}
    assert by_variable["SHADOWSHIFT_TEMPORAL_ADDRESS"].default == "`localhost:7233`"
    assert by_variable["SHADOWSHIFT_STATE_DIR"].default == "`.state`"
    assert by_variable["SHADOWSHIFT_OTLP_ENDPOINT"].default == "unset"


def test_a_missing_block_is_reported() -> None:
    """Writing into a file without the markers fails with a message naming them."""
    with pytest.raises(ValueError, match="settings-reference"):
        settings_doc.replace_block("# no markers here\n")


def test_metric_table_lists_exactly_our_metrics() -> None:
    """Each exported metric is documented in docs/observability.md, and it documents no
    metric we lack."""
    text = OBSERVABILITY.read_text()
    documented = set(re.findall(r"^\| `(shadowshift_[a-z_]+)` \|", text, re.M))
    assert documented == {m.prometheus for m in METRICS}
