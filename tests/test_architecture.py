"""House rules from ARCHITECTURE.md, checked on the source: where imports may point."""

from __future__ import annotations

import ast
from pathlib import Path

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
