"""The operations guide's configuration reference, generated from :mod:`workers.settings`.

``python -m workers.settings_doc`` prints the table; ``python -m workers.settings_doc --write
docs/operations.md`` replaces the block between the markers. ``tests/workers/test_settings_doc.py``
fails when the guide and the settings drift apart, so the table cannot go stale.

The meaning column is each field's docstring (the string literal under the field),
read with :mod:`ast` because Python keeps no attribute docstrings at run time.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from pathlib import Path

from workers import settings as settings_module
from workers.settings import PREFIX, REPO_ROOT, Settings

BEGIN = ("<!-- settings-reference:begin "
         "(python -m workers.settings_doc --write docs/operations.md) -->")
END = "<!-- settings-reference:end -->"
_VARIABLE = re.compile(r"^``(?P<var>" + PREFIX + r"[A-Z_]+)``:\s*(?P<meaning>.*)$", re.S)


@dataclasses.dataclass(frozen=True)
class SettingDoc:
    """One row of the reference."""

    variable: str
    """``SHADOWSHIFT_*`` name."""
    field: str
    """The :class:`Settings` field it sets."""
    default: str
    """The default, as shown."""
    meaning: str
    """The field's docstring without the variable name."""


def field_docstrings() -> dict[str, str]:
    """Field name → docstring of every documented :class:`Settings` field."""
    tree = ast.parse(Path(settings_module.__file__).read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    docs: dict[str, str] = {}
    for node, following in zip(cls.body, cls.body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = following.value.value
    return docs


def _default(field: dataclasses.Field[object]) -> str:
    value = field.default
    if value is dataclasses.MISSING or value is None or value == "":
        return "unset"
    if isinstance(value, Path):
        try:
            return f"`{value.relative_to(REPO_ROOT)}`"
        except ValueError:
            return f"`{value}`"
    return f"`{value}`"


def _markdown(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


def rows() -> list[SettingDoc]:
    """Every setting, in field order.

    Raises:
        ValueError: a field without a docstring that starts with its variable name.
    """
    docs = field_docstrings()
    found = []
    for field in dataclasses.fields(Settings):
        match = _VARIABLE.match(docs.get(field.name, "").strip())
        if not match:
            raise ValueError(f"Settings.{field.name} needs a docstring starting with "
                             f"``{PREFIX}{field.name.upper()}``: (workers/settings.py)")
        found.append(SettingDoc(match["var"], field.name, _default(field),
                                _markdown(match["meaning"])))
    return found


def table() -> str:
    """The markdown table between the markers (markers included)."""
    lines = [BEGIN, "| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{r.variable}` | {r.default} | {r.meaning} |" for r in rows()]
    return "\n".join([*lines, END])


def replace_block(text: str) -> str:
    """``text`` with its generated block replaced by the current table."""
    start, end = text.find(BEGIN.split(" (")[0]), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no block between {BEGIN!r} and {END!r}")
    return text[:start] + table() + text[end + len(END):]


def main(argv: list[str]) -> int:
    """Print the table, or ``--write FILE`` to update FILE's block in place."""
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_block(path.read_text()))
        return 0
    if argv:
        print("usage: python -m workers.settings_doc [--write docs/operations.md]",
              file=sys.stderr)
        return 2
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
