"""The ``ketacare`` command on a real SQLite file: schema, users, audit verify, backup, restore."""

from __future__ import annotations

import gc
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ketacare.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KETACARE_DATABASE_URL", raising=False)
    monkeypatch.setenv("KETACARE_SECRET_KEY", "k" * 40)
    return tmp_path


def run(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_serve_refuses_unmigrated_database(env: Path) -> None:
    result = run("serve", "--port", "1")
    assert result.exit_code == 2
    assert "ketacare db upgrade" in result.output


def test_db_upgrade_current_downgrade(env: Path) -> None:
    assert run("db", "upgrade").exit_code == 0
    current = run("db", "current")
    from ketacare.migrations import head_revision

    assert f"current: {head_revision()}" in current.output
    assert run("db", "downgrade", "base").exit_code == 0
    assert "current: none" in run("db", "current").output


def test_users_audit_backup_restore(env: Path) -> None:
    run("db", "upgrade")
    assert (
        run("clinic", "create", "--name", "North", "--slug", "north", "--record-prefix", "NSP").exit_code == 0
    )
    created = run(
        "user",
        "create",
        "dana",
        "--clinic",
        "north",
        "--role",
        "prescriber",
        "--full-name",
        "Dana",
        "--prescriber-kind",
        "physician",
        "--password",
        "a long enough password",
    )
    assert created.exit_code == 0, created.output
    weak = run(
        "user",
        "create",
        "sam",
        "--clinic",
        "north",
        "--role",
        "nurse",
        "--full-name",
        "Sam",
        "--password",
        "short",
    )
    assert weak.exit_code == 2 and "12 characters" in weak.output
    assert (
        run(
            "user",
            "create",
            "x1x",
            "--clinic",
            "nope",
            "--role",
            "nurse",
            "--full-name",
            "X",
            "--password",
            "a long enough password",
        ).exit_code
        == 2
    )
    assert run("user", "set-role", "dana", "nurse").exit_code == 0
    assert run("user", "set-password", "dana", "--password", "another long password").exit_code == 0
    assert run("user", "set-password", "ghost", "--password", "another long password").exit_code == 2

    verified = run("audit", "verify")
    assert verified.exit_code == 0 and "intact" in verified.output

    backup_file = env / "backups" / "one.sqlite3"
    assert run("backup", str(backup_file)).exit_code == 0
    assert run("backup", str(backup_file)).exit_code == 2  # never overwrites

    db_file = env / "ketacare.sqlite3"
    with sqlite3.connect(db_file) as conn:
        conn.execute("DROP TRIGGER audit_entries_no_update")
        conn.execute("UPDATE audit_entries SET detail = 'tampered' WHERE seq = 2")
    tampered = run("audit", "verify")
    assert tampered.exit_code == 1
    assert "entry 2 was altered" in tampered.output

    assert run("restore", str(backup_file)).exit_code == 2  # needs --yes
    assert run("restore", str(backup_file), "--yes").exit_code == 0
    assert run("audit", "verify").exit_code == 0


def test_demo_builds_and_refuses_to_reseed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KETACARE_DATABASE_URL", raising=False)
    monkeypatch.delenv("KETACARE_SECRET_KEY", raising=False)
    data = tmp_path / "demo"
    first = run("demo", "--data-dir", str(data), "--patients", "12", "--no-serve")
    assert first.exit_code == 0, first.output
    assert "dr.north" in first.output and "ketacare-demo-password" in first.output
    again = run("demo", "--data-dir", str(data), "--no-serve")
    assert again.exit_code == 0 and "existing demo database" in again.output
    code = run("demo-code", "dr.north", "--data-dir", str(data))
    assert code.exit_code == 0 and code.output.strip().isdigit()
    with sqlite3.connect(data / "ketacare.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM patients").fetchone() == (24,)
        assert conn.execute("SELECT count(*) FROM clinics").fetchone() == (2,)


def test_backup_without_database_is_a_clear_error(env: Path) -> None:
    result = run("backup", str(env / "b.sqlite3"))
    assert result.exit_code == 2 and "no database" in result.output


@pytest.mark.skipif(
    not os.environ.get("KETACARE_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="pg_dump/pg_restore path: runs in the PostgreSQL pass of .ci/run",
)
def test_postgresql_backup_and_restore(
    scratch_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = scratch_engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))  # where the chain anchors go
    monkeypatch.setenv("KETACARE_DATABASE_URL", url)
    assert run("db", "upgrade").exit_code == 0
    assert (
        run("clinic", "create", "--name", "Kept", "--slug", "kept", "--record-prefix", "KPT").exit_code == 0
    )
    dump = tmp_path / "ketacare.dump"
    backed_up = run("backup", str(dump))
    assert backed_up.exit_code == 0, backed_up.output
    assert (
        run("clinic", "create", "--name", "Later", "--slug", "later", "--record-prefix", "LTR").exit_code == 0
    )
    scratch_engine.dispose()
    gc.collect()  # the commands above ran in this process: close their pooled connections
    restored = run("restore", str(dump), "--yes")  # refuses while connections are open
    assert restored.exit_code == 0, restored.output
    with scratch_engine.connect() as conn:
        slugs = {row[0] for row in conn.exec_driver_sql("SELECT slug FROM clinics")}
    assert slugs == {"kept"}
    assert run("audit", "verify").exit_code == 0


def test_purge_form_hits_keeps_the_recent_ones(env: Path) -> None:
    run("db", "upgrade")
    with sqlite3.connect(env / "ketacare.sqlite3") as conn:
        conn.executemany(
            "INSERT INTO directory_form_hits (form, addr_hash, at) VALUES ('assess', 'h', ?)",
            [("2020-01-01 00:00:00.000000",), ("2999-01-01 00:00:00.000000",)],
        )
    result = run("purge-form-hits", "--hours", "24")
    assert result.exit_code == 0 and "Removed 1" in result.output
    with sqlite3.connect(env / "ketacare.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM directory_form_hits").fetchone() == (1,)
