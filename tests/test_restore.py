"""Restore drills (issue 15, item 1): a damaged backup never touches the live database, a
running app blocks a SQLite restore, and a good backup round-trips with the old database kept.
The PostgreSQL drills run in the PostgreSQL pass of .ci/run (pg_dump/pg_restore)."""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from typer.testing import CliRunner

from ketacare import integrity
from ketacare.backups import sha256_of
from ketacare.cli import app

runner = CliRunner()
ON_POSTGRESQL = os.environ.get("KETACARE_TEST_DATABASE_URL", "").startswith("postgresql")


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def _populate() -> None:
    assert run("db", "upgrade").exit_code == 0
    made = run("clinic", "create", "--name", "North", "--slug", "north", "--record-prefix", "NSP")
    assert made.exit_code == 0, made.output
    for name in ("dana", "eli"):
        user = run(
            "user", "create", name, "--clinic", "north", "--role", "nurse", "--full-name", name.title()
        )
        assert user.exit_code == 0, user.output


def _rewrite_checksum(path: Path) -> None:
    """The damage a checksum cannot catch: the checksum file rewritten to match."""
    path.with_name(path.name + ".sha256").write_text(f"{sha256_of(path)}  {path.name}\n")


def _copy(backup: Path, name: str) -> Path:
    copy = backup.with_name(name)
    shutil.copy(backup, copy)
    shutil.copy(backup.with_name(backup.name + ".sha256"), copy.with_name(name + ".sha256"))
    return copy


# --- SQLite -------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KETACARE_DATABASE_URL", raising=False)
    monkeypatch.delenv("KETACARE_ANCHOR_FILE", raising=False)
    monkeypatch.setenv("KETACARE_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("KETACARE_NEW_PASSWORD", "correct horse battery staple")
    _populate()
    return tmp_path


def _sqlite_counts(data_dir: Path) -> tuple[int, int, int]:
    with sqlite3.connect(data_dir / "ketacare.sqlite3") as conn:
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        patients = conn.execute("SELECT count(*) FROM patients").fetchone()[0]
        clinics = conn.execute("SELECT count(*) FROM clinics").fetchone()[0]
    return users, patients, clinics


def test_backup_writes_a_checksum_that_verify_checks(sqlite_env: Path) -> None:
    backup = sqlite_env / "b" / "one.sqlite3"
    assert run("backup", str(backup)).exit_code == 0
    sums = backup.with_name("one.sqlite3.sha256").read_text().split()
    assert sums == [sha256_of(backup), "one.sqlite3"]
    ok = run("backup", "verify", str(backup))
    assert ok.exit_code == 0 and "intact" in ok.output
    assert run("backup", "verify", str(sqlite_env / "none.sqlite3")).exit_code == 2
    backup.with_name("one.sqlite3.sha256").unlink()
    assert run("backup", "verify", str(backup)).exit_code == 2  # no checksum: cannot say


@pytest.mark.parametrize("damage", ["wrong checksum", "corrupt pages", "truncated", "not a database"])
def test_a_damaged_sqlite_backup_changes_nothing(sqlite_env: Path, damage: str) -> None:
    backup = sqlite_env / "one.sqlite3"
    assert run("backup", str(backup)).exit_code == 0
    bad = _copy(backup, "bad.sqlite3")
    data = bytearray(bad.read_bytes())
    if damage == "wrong checksum":
        bad.with_name("bad.sqlite3.sha256").write_text(f"{'0' * 64}  bad.sqlite3\n")
    elif damage == "corrupt pages":
        for offset in range(4096 + 100, len(data), 997):  # every page after the first scribbled on
            data[offset] ^= 0x5A
        bad.write_bytes(bytes(data))
        _rewrite_checksum(bad)
    elif damage == "truncated":
        bad.write_bytes(bytes(data[: int(len(data) * 0.9)]))
        _rewrite_checksum(bad)
    else:
        bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
        _rewrite_checksum(bad)
    before = _sqlite_counts(sqlite_env)
    live_hash = sha256_of(sqlite_env / "ketacare.sqlite3")
    checked = run("backup", "verify", str(bad))
    assert checked.exit_code == 1, checked.output
    restored = run("restore", str(bad), "--yes")
    assert restored.exit_code == 2, restored.output
    assert "Nothing was changed" in " ".join(restored.output.split())
    assert restored.exception is None or isinstance(restored.exception, SystemExit)  # no traceback
    assert _sqlite_counts(sqlite_env) == before
    assert sha256_of(sqlite_env / "ketacare.sqlite3") == live_hash
    assert run("audit", "verify").exit_code == 0
    assert not list(sqlite_env.glob(".ketacare.sqlite3.restore-*"))  # the staging copy is gone


def test_restore_refuses_while_the_app_runs(sqlite_env: Path) -> None:
    backup = sqlite_env / "one.sqlite3"
    assert run("backup", str(backup)).exit_code == 0
    before = _sqlite_counts(sqlite_env)
    lock = sqlite_env / "ketacare-server.lock"
    with integrity.held_lock(lock, exclusive=False):  # what `ketacare serve` holds while it serves
        refused = run("restore", str(backup), "--yes")
    assert refused.exit_code == 2 and "stop it before restoring" in " ".join(refused.output.split())
    assert _sqlite_counts(sqlite_env) == before


def test_a_sqlite_round_trip_keeps_the_old_database(sqlite_env: Path) -> None:
    backup = sqlite_env / "one.sqlite3"
    assert run("backup", str(backup)).exit_code == 0
    later = run("user", "create", "fay", "--clinic", "north", "--role", "nurse", "--full-name", "Fay")
    assert later.exit_code == 0
    assert run("audit", "verify").exit_code == 0  # anchors the chains, now longer than the backup's
    before = _sqlite_counts(sqlite_env)
    restored = run("restore", str(backup), "--yes")
    assert restored.exit_code == 0, restored.output
    assert _sqlite_counts(sqlite_env) == (before[0] - 1, before[1], before[2])
    kept = list(sqlite_env.glob("ketacare.sqlite3.old-*"))
    assert len(kept) == 1
    with sqlite3.connect(kept[0]) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == before[0]
    # The restore line retires the checkpoints of the discarded entries: verify passes, and
    # goes on catching what happens next.
    assert run("audit", "verify").exit_code == 0, run("audit", "verify").output
    assert run("ledger", "verify").exit_code == 0
    assert (
        run("user", "create", "gil", "--clinic", "north", "--role", "nurse", "--full-name", "G").exit_code
        == 0
    )
    assert run("audit", "verify").exit_code == 0


def test_audit_verify_finds_entries_removed_after_an_anchor(sqlite_env: Path) -> None:
    """An insider deletes the newest entries and rewinds the head; the checkpoint remembers."""
    assert run("audit", "verify").exit_code == 0  # anchors every chain's head
    with sqlite3.connect(sqlite_env / "ketacare.sqlite3") as conn:
        conn.execute("DROP TRIGGER audit_entries_no_delete")
        chain_id, last = conn.execute(
            "SELECT chain_id, max(chain_seq) FROM audit_entries WHERE chain_id > 0 GROUP BY chain_id"
        ).fetchone()
        previous = conn.execute(
            "SELECT entry_hash FROM audit_entries WHERE chain_id = ? AND chain_seq = ?", (chain_id, last - 1)
        ).fetchone()[0]
        conn.execute("DELETE FROM audit_entries WHERE chain_id = ? AND chain_seq = ?", (chain_id, last))
        conn.execute(
            "UPDATE audit_heads SET seq = ?, last_hash = ? WHERE chain_id = ?", (last - 1, previous, chain_id)
        )
    found = run("audit", "verify")
    assert found.exit_code == 1
    assert "entries removed" in " ".join(found.output.split())


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def pg_env(scratch_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    if not ON_POSTGRESQL:
        pytest.skip("pg_dump/pg_restore path: runs in the PostgreSQL pass of .ci/run")
    url = scratch_engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KETACARE_DATABASE_URL", url)
    monkeypatch.setenv("KETACARE_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("KETACARE_NEW_PASSWORD", "correct horse battery staple")
    scratch_engine.dispose()
    _populate()
    yield tmp_path, url
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = make_url(url).database or ""
    with admin.connect() as conn:
        leftovers = conn.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"{name}_%"}
        ).scalars()
        for db_name in list(leftovers):
            conn.execute(text(f'DROP DATABASE "{db_name}" WITH (FORCE)'))
    admin.dispose()


def _pg_counts(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return (
                conn.execute(text("SELECT count(*) FROM users")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM patients")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM clinics")).scalar_one(),
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("checksum", ["its own checksum", "a checksum rewritten to match"])
def test_a_truncated_pg_dump_changes_nothing(pg_env, checksum: str) -> None:  # type: ignore[no-untyped-def]
    data_dir, url = pg_env
    dump = data_dir / "one.dump"
    made = run("backup", str(dump))
    assert made.exit_code == 0, made.output
    assert run("backup", "verify", str(dump)).exit_code == 0
    content = dump.read_bytes()
    dump.write_bytes(content[: int(len(content) * 0.9)])
    if checksum == "a checksum rewritten to match":
        _rewrite_checksum(dump)  # only pg_restore into the staging database can find it now
    else:
        assert run("backup", "verify", str(dump)).exit_code == 1
    before = _pg_counts(url)
    assert before[0] == 2
    restored = run("restore", str(dump), "--yes")
    assert restored.exit_code == 2, restored.output
    assert _pg_counts(url) == before
    assert run("audit", "verify").exit_code == 0
    assert run("ledger", "verify").exit_code == 0


def test_a_pg_round_trip_switches_databases_and_keeps_the_old_one(pg_env) -> None:  # type: ignore[no-untyped-def]
    data_dir, url = pg_env
    dump = data_dir / "one.dump"
    assert run("backup", str(dump)).exit_code == 0
    assert (
        run("user", "create", "fay", "--clinic", "north", "--role", "nurse", "--full-name", "F").exit_code
        == 0
    )
    assert run("audit", "verify").exit_code == 0
    before = _pg_counts(url)
    gc.collect()  # the commands above ran in this process: close their pooled connections
    restored = run("restore", str(dump), "--yes")
    assert restored.exit_code == 0, restored.output
    assert _pg_counts(url) == (before[0] - 1, before[1], before[2])
    said = " ".join(restored.output.split())
    old_name = said.split("is kept as ")[1].split(".")[0]
    assert old_name.startswith(f"{make_url(url).database}_old_")
    assert _pg_counts(make_url(url).set(database=old_name).render_as_string(hide_password=False)) == before
    assert run("audit", "verify").exit_code == 0
    assert run("ledger", "verify").exit_code == 0


def test_a_wrong_checksum_refuses_a_pg_restore(pg_env) -> None:  # type: ignore[no-untyped-def]
    data_dir, url = pg_env
    dump = data_dir / "one.dump"
    assert run("backup", str(dump)).exit_code == 0
    dump.with_name("one.dump.sha256").write_text(f"{'1' * 64}  one.dump\n")
    before = _pg_counts(url)
    assert run("backup", "verify", str(dump)).exit_code == 1
    assert run("restore", str(dump), "--yes").exit_code == 2
    assert _pg_counts(url) == before
