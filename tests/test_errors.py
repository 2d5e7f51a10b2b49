"""Friendly error pages without stack traces; a locked or missing database changes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ketacare import migrations
from ketacare.app import create_app
from ketacare.config import Environment, load_settings
from ketacare.db import make_engine
from tests.conftest import SECRET_KEY
from tests.helpers import is_problem


def test_404_page_is_friendly(as_role) -> None:
    page = as_role("nurse").get("/no/such/page")
    assert page.status_code == 404
    assert "There is nothing at this address" in page.text and "Traceback" not in page.text
    assert is_problem(as_role("nurse").api("GET", "/api/v1/nothing"), 404)


def test_unknown_patient_is_404(as_role) -> None:
    assert as_role("nurse").get("/patients/999999").status_code == 404


def test_500_page_hides_the_stack_trace(app) -> None:
    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("secret internals")

    client = TestClient(app, raise_server_exceptions=False)
    page = client.get("/boom")
    assert page.status_code == 500
    assert "Something went wrong" in page.text
    assert "secret internals" not in page.text and "Traceback" not in page.text


def _file_app(tmp_path: Path, busy_timeout_ms: int = 5000):  # type: ignore[no-untyped-def]
    settings = load_settings(
        environment=Environment.test,
        data_dir=tmp_path,
        secret_key=SECRET_KEY,
        sqlite_busy_timeout_ms=busy_timeout_ms,
    )
    engine = make_engine(settings.resolved_database_url, sqlite_busy_timeout_ms=busy_timeout_ms)
    migrations.upgrade(engine)
    return create_app(settings, engine=engine), tmp_path / "ketacare.sqlite3"


def test_locked_database_gives_503_and_nothing_half_written(tmp_path: Path) -> None:
    app, db_file = _file_app(tmp_path, busy_timeout_ms=200)
    client = TestClient(app)
    client.get("/login")
    blocker = sqlite3.connect(db_file, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        page = client.get("/healthz")
        assert page.status_code in (200, 503)  # a plain read may still pass in WAL mode
        login = client.post("/login", data={"username": "x", "password": "y", "csrf_token": "z"})
        assert login.status_code in (403, 503)
        api = client.get("/api/v1/patients", headers={"Authorization": "Bearer kc_nothing"})
        assert is_problem(api, 503)
        assert "nothing was saved" in api.json()["detail"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    after = client.get("/api/v1/patients", headers={"Authorization": "Bearer kc_nothing"})
    assert is_problem(after, 401)


def test_database_gone_gives_503(tmp_path: Path) -> None:
    app, db_file = _file_app(tmp_path)
    client = TestClient(app)
    app.state.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    db_file.mkdir()  # a directory where the database was: nothing can open it
    page = client.get("/healthz")
    assert page.status_code == 503
    assert "database" in page.text.lower()


def test_app_refuses_unmigrated_database(tmp_path: Path) -> None:
    settings = load_settings(environment=Environment.test, data_dir=tmp_path, secret_key=SECRET_KEY)
    app = create_app(settings)
    with pytest.raises(migrations.DatabaseNotMigrated, match="ketacare db upgrade"), TestClient(app):
        pass


def test_values_the_database_cannot_hold_are_refused_not_crashed(as_role, world) -> None:
    """Found by the API fuzzer on PostgreSQL: a NUL character, an over-long path segment."""
    nurse = as_role("nurse")
    search = nurse.api("GET", "/api/v1/patients", params={"q": "\x00smi"})
    assert search.status_code in (200, 422)  # SQLite can compare NUL; PostgreSQL refuses it
    long_section = "x" * 200
    removed = nurse.api("DELETE", f"/api/v1/patients/{world.patient_a.id}/{long_section}/1")
    assert is_problem(removed, 404)
    bad_name = nurse.api("PATCH", f"/api/v1/patients/{world.patient_a.id}", json={"phone": "5\x0055"})
    assert bad_name.status_code in (200, 422)
    assert nurse.api("GET", f"/api/v1/patients/{world.patient_a.id}").status_code == 200
