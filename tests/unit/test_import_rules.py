"""The layering of DESIGN.md, enforced: `domain/` is pure, `projections/` only folds domain events."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names)
FORBIDDEN_STDLIB_IN_DOMAIN = {"socket", "smtplib", "asyncio", "subprocess", "logging", "threading", "sqlite3", "urllib", "http"}

ALLOWED = {
    "domain": {"pydantic", "eventsourcing", "jinja2", "markupsafe", "yaml", "domain"},
    "projections": {"pydantic", "domain", "projections"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_design_allows(layer: str) -> None:
    violations = []
    for path in sorted((REPO / layer).rglob("*.py")):
        for line, module in imports_of(path):
            if module in STDLIB and not (layer == "domain" and module in FORBIDDEN_STDLIB_IN_DOMAIN):
                continue
            if module not in ALLOWED[layer] and module != "__future__":
                violations.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not violations, "layering violated:\n" + "\n".join(violations)


def test_domain_reads_no_clock() -> None:
    """Time is injected: domain code takes `now` instead of asking for it."""
    offenders = []
    for path in sorted((REPO / "domain").rglob("*.py")):
        text = path.read_text()
        for needle in ("datetime.now(", "datetime.utcnow(", "time.time(", "date.today(", "time.monotonic("):
            if needle in text:
                offenders.append(f"{path.relative_to(REPO)} calls {needle}")
    assert not offenders, "\n".join(offenders)


def test_no_topic_name_literals_outside_the_registry() -> None:
    """One registry names topics; a literal like "tidings.events" anywhere else is a second source of truth."""
    offenders = []
    for layer in ("domain", "projections", "processors", "connectors", "infra"):
        for path in sorted((REPO / layer).rglob("*.py")):
            if path.name == "topics.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("tidings."):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not offenders, "\n".join(offenders)
