"""The README's configuration table, generated from `Settings` so the two cannot drift.

`python -m infra.settings_doc` rewrites the table between the markers; a unit test fails when the
README is out of date.
"""

from __future__ import annotations

import re
from pathlib import Path

from infra.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def settings_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        lines.append(f"| `TIDINGS_{name.upper()}` | {shown} | {(field.description or '').replace('|', '/')} |")
    return "\n".join(lines)


def render(readme: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    return pattern.sub(f"{START}\n{settings_table()}\n{END}", readme)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
