"""Migrations round-trip, and the models never drift from them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, make_url, text

from ketacare import migrations
from ketacare.db import make_engine
from ketacare.models import metadata


@pytest.fixture
def scratch_engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty database of the backend under test."""
    url = os.environ.get("KETACARE_TEST_DATABASE_URL")
    if not url:
        engine = make_engine(f"sqlite:///{tmp_path / 'scratch.sqlite3'}")
        yield engine
        engine.dispose()
        return
    name = f"ketacare_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(url).set(database=name).render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}"'))
    admin.dispose()


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
