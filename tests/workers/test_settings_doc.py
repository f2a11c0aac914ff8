"""The README's configuration reference and metric table match the code they describe."""

from __future__ import annotations

import re

import pytest

from workers import settings_doc
from workers.observability import METRICS
from workers.settings import KNOWN_VARIABLES, REPO_ROOT

README = REPO_ROOT / "README.md"


def test_readme_settings_table_is_the_generated_one() -> None:
    """The block in the README is exactly what settings.py generates today (regenerate with
    `python -m workers.settings_doc --write README.md`)."""
    text = README.read_text()
    assert settings_doc.replace_block(text) == text, (
        "README.md's configuration reference is stale: run "
        "`python -m workers.settings_doc --write README.md`"
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


def test_readme_metric_table_lists_exactly_our_metrics() -> None:
    """Each exported metric is documented, and the README documents no metric we lack."""
    text = README.read_text()
    documented = set(re.findall(r"^\| `(shadowshift_[a-z_]+)` \|", text, re.M))
    assert documented == {m.prometheus for m in METRICS}
