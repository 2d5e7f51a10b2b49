"""The registry's engine (Arrow extract + DuckDB + per-group statistics) gives the numbers of the
plain row-by-row reference (reference.py: the registry as it was first written, over pandas) on
random cohorts: in memory, through the session's own connection, and through ADBC on a scratch
database of its own (committed, which the tests' rolled-back transactions are not)."""

from __future__ import annotations

import datetime as dt
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session

from ketacare import migrations
from ketacare.analytics import extract, registry
from ketacare.db import make_engine, make_sessionmaker
from tests.analytics import reference
from tests.analytics.random_cohort import fill

AS_OF = dt.date(2026, 11, 1)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def assert_same_report(ours: registry.Report, ref: reference.Report) -> None:
    assert ours.suppressed_groups == ref.suppressed_groups
    assert list(ours.tables) == list(ref.tables)
    for name, table in ref.tables.items():
        mine = ours.tables[name]
        assert mine.columns == table.columns
        assert len(mine.rows) == len(table.rows), name
        for got, want in zip(mine.rows, table.rows, strict=True):
            for col in table.columns:
                assert _same(got.get(col), want.get(col)), (name, col, got, want)
    assert list(ours.relief_curves) == list(ref.relief_curves)


def _both(ex: extract.Extract, cols: extract.Columns, research: bool) -> None:
    """The figures before disclosure control (tests/analytics/test_disclosure.py tests that)."""
    del research
    assert_same_report(
        registry.build(cols, AS_OF, research=False), reference.build(ex, AS_OF, research=False)
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_in_memory_extract_matches_the_reference(db: Session, seed: int) -> None:
    fill(db.connection(), seed)
    ex = extract.extract(db, None)
    assert len(ex.series) and len(ex.scores)
    for research in (False, True):
        _both(ex, extract.columnar(ex), research)


def test_the_session_reader_matches_the_reference(db: Session) -> None:
    clinics = fill(db.connection(), 5, patients=60)
    assert not extract._second_connection_sees_all(db)  # the test's transaction is not committed
    for clinic in [None, *clinics]:
        _both(extract.extract(db, clinic), extract.columns(db, clinic), research=clinic is None)


def test_an_empty_clinic_reports_nothing(db: Session) -> None:
    report = registry.build(extract.columns(db, 987_654), AS_OF, research=False)
    assert report.table("summary").rows == [] and report.relief_curves == {}


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Engine]:
    """A database of its own, migrated and committed to: SQLite, or on PostgreSQL when the suite
    runs there, a new database dropped afterwards."""
    url = os.environ.get("KETACARE_TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        engine = make_engine(f"sqlite:///{tmp_path / 'scratch.sqlite3'}")
        migrations.upgrade(engine)
        yield engine
        engine.dispose()
        return
    name = f"ketacare_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(url).set(database=name).render_as_string(hide_password=False))
    try:
        migrations.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_adbc_reader_matches_the_session_reader_and_the_reference(scratch: Engine) -> None:
    with scratch.begin() as conn:
        clinics = fill(conn, 6, patients=60)
    factory = make_sessionmaker(scratch)
    for clinic in [None, *clinics]:
        with factory() as db:
            assert extract._second_connection_sees_all(db)
            fast, ex = extract.columns(db, clinic), extract.extract(db, clinic)
        with scratch.connect() as conn, Session(bind=conn) as own:
            assert not extract._second_connection_sees_all(own)
            assert fast.tables() == extract.columns(own, clinic).tables()
        _both(ex, fast, research=clinic is None)


def test_a_session_that_has_written_reads_through_its_own_connection(scratch: Engine) -> None:
    factory = make_sessionmaker(scratch)
    with factory() as db:
        fill(db.connection(), 7, patients=5)
        if scratch.dialect.name == "postgresql":
            assert not extract._second_connection_sees_all(db)  # PostgreSQL knows it has written
            cols = extract.columns(db, None)
            assert cols.series.num_rows == len(extract.extract(db, None).series)


def test_sqlite_columns_are_read_in_a_child_process_never_by_adbc_in_this_one(scratch: Engine) -> None:
    """ADBC's SQLite library in the app's process broke the app's file locks (writes went
    missing in the browser suite): on SQLite the columnar read runs in a child process."""
    import sys

    if scratch.dialect.name != "sqlite":
        pytest.skip("PostgreSQL reads through ADBC in process: a server, no shared file locks")
    with scratch.begin() as conn:
        clinics = fill(conn, 8, patients=20)
    with make_sessionmaker(scratch)() as db:
        ran = []
        real = extract.subprocess.run

        def child(*a, **k):  # type: ignore[no-untyped-def]
            ran.append(done := real(*a, **k))
            return done

        extract.subprocess.run = child  # type: ignore[assignment]
        try:
            tables = extract.columns(db, clinics[0]).tables()
        finally:
            extract.subprocess.run = real  # type: ignore[assignment]
    assert ran and ran[0].returncode == 0, ran  # the child read every table, no fallback
    assert "adbc_driver_sqlite" not in sys.modules
    with scratch.connect() as conn, Session(bind=conn) as own:
        assert tables == extract.columns(own, clinics[0]).tables()


def test_a_failed_child_reader_falls_back_to_the_sessions_connection(scratch: Engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    if scratch.dialect.name != "sqlite":
        pytest.skip("the child reader is SQLite's")
    with scratch.begin() as conn:
        clinics = fill(conn, 9, patients=20)
    with scratch.connect() as conn, Session(bind=conn) as own:
        expected = extract.columns(own, clinics[0]).tables()
    monkeypatch.setattr(
        extract.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "boom")
    )
    with make_sessionmaker(scratch)() as db:
        assert extract.columns(db, clinics[0]).tables() == expected
