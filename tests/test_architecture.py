"""House rules from ARCHITECTURE.md, checked on the source: where imports may point."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ketacare

SRC = Path(ketacare.__file__).resolve().parent
# Glue that legitimately sees every table: the schema registry, the demo seeder, the auth layer
# of the web shell, and Alembic.
MAY_IMPORT_ANY_MODELS = {"models.py", "demo.py", "web/deps.py"}


def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("migrations/"):
            continue
        found.append((rel, ast.parse(path.read_text(), filename=rel)))
    return found


def _imports(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_features_never_touch_another_features_tables() -> None:
    offences = []
    for rel, tree in _modules():
        if rel in MAY_IMPORT_ANY_MODELS:
            continue
        own = rel.split("/")[0] if "/" in rel else None
        for name in _imports(tree):
            parts = name.split(".")
            if len(parts) >= 3 and parts[0] == "ketacare" and parts[2] == "models" and parts[1] != own:
                offences.append(f"{rel} imports {name}")
    assert not offences, "call the other feature's service instead:\n" + "\n".join(sorted(set(offences)))


def test_pharmacology_and_knowledge_import_nothing_of_the_app() -> None:
    offences = []
    for rel, tree in _modules():
        own = rel.split("/")[0]
        if own not in ("pharmacology", "knowledge"):
            continue
        for name in _imports(tree):
            if name.startswith("ketacare.") and not name.startswith(f"ketacare.{own}"):
                offences.append(f"{rel} imports {name}")
    assert not offences, "\n".join(offences)


def test_routes_hold_no_queries() -> None:
    offences = []
    for rel, tree in _modules():
        if not rel.endswith("routes.py"):
            continue
        for name in _imports(tree):
            if name.startswith("sqlalchemy") and name not in ("sqlalchemy.orm", "sqlalchemy.orm.Session"):
                offences.append(f"{rel} imports {name}")
    assert not offences, "queries belong in service.py:\n" + "\n".join(offences)


# The pure rule modules: every feature's rules.py and the rule modules with a telling name.
RULE_MODULES = sorted(
    {p.relative_to(SRC).as_posix() for p in SRC.glob("*/rules.py")}
    | {
        "screening/eligibility.py",
        "planning/dosing.py",
        "planning/costing.py",
        "safety/monitoring.py",
        "analytics/disclosure.py",
    }
)
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _clock_reads(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if name in CLOCK_CALLS:
                found.append(f"line {node.lineno}: {ast.unparse(func)}()")
    return found


@pytest.mark.parametrize("rel", RULE_MODULES)
def test_rules_modules_read_no_clock_and_no_database(rel: str) -> None:
    """A rule is a plain function of what it is given: the time comes in as an argument, and no
    rule queries the database or imports the web layer (STYLE: pure clinical rules)."""
    tree = ast.parse((SRC / rel).read_text(), filename=rel)
    io = [
        name
        for name in _imports(tree)
        if name.split(".")[0] in ("sqlalchemy", "fastapi", "starlette", "httpx", "smtplib", "socket")
        or name.startswith(("ketacare.db", "ketacare.web", "ketacare.audit"))
        or (name.startswith("ketacare.") and name.split(".")[-1] in ("service", "models", "routes"))
    ]
    assert not io, f"{rel} imports I/O: {io}"
    assert not _clock_reads(tree), f"{rel} reads the clock: {_clock_reads(tree)}"


def test_the_clock_scan_catches_a_clock_read() -> None:
    tree = ast.parse("import datetime as dt\ndef f():\n    return dt.datetime.now(dt.UTC)\n")
    assert _clock_reads(tree) == ["line 3: dt.datetime.now()"]
