"""Migrations round-trip, and the models never drift from them."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from ketacare import migrations
from ketacare.models import metadata


def test_upgrade_downgrade_upgrade(scratch_engine: Engine) -> None:
    migrations.upgrade(scratch_engine)
    assert migrations.current_revision(scratch_engine) == migrations.head_revision()
    migrations.downgrade(scratch_engine, "base")
    assert migrations.current_revision(scratch_engine) is None
    assert set(inspect(scratch_engine).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(scratch_engine)
    assert "audit_entries" in inspect(scratch_engine).get_table_names()


def test_models_match_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"
