"""Backups that can be checked, and restores that cannot destroy.

``backup`` anchors every chain's head, writes the copy (SQLite's online backup API, or
``pg_dump`` in custom format) and a checksum beside it (``FILE.sha256``, the format
``sha256sum -c`` reads). ``check`` validates a copy without touching the database: the
checksum, then the contents (SQLite's integrity check, or ``pg_restore --list``).

``restore`` validates first, then builds the restored database beside the live one, brings
it to the current schema and verifies its audit and ledger chains (and the checkpoints they
had reached when the copy was taken). Only then does it switch: SQLite by an atomic rename
over the live file (the old file is kept as ``<file>.old-<timestamp>``); PostgreSQL by
renaming the live database to ``<name>_old_<timestamp>`` and the new one to the live name in
one transaction. Whatever fails before the switch leaves the live database as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import URL, Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from ketacare import integrity, migrations
from ketacare.audit import service as audit
from ketacare.config import Settings
from ketacare.db import make_engine, make_sessionmaker, transaction
from ketacare.ledger import chain as ledger_chain

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore refused: nothing was changed."""


class BackupInvalid(BackupError):
    """The file is not an intact backup (checksum or contents)."""


def checksum_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _kind(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise BackupInvalid(f"{path} is neither a SQLite database nor a pg_dump custom-format file")


def _pg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (Debian package postgresql-client)")
    # The command is one of ours (pg_dump / pg_restore) with arguments we built, never a shell string.
    return subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603


def _last_line(completed: subprocess.CompletedProcess[str]) -> str:
    lines = completed.stderr.strip().splitlines()
    return lines[-1] if lines else "no message"


# --- backup and check ---------------------------------------------------------------------------


def anchor_heads(engine: Engine, anchor_file: Path, note: str = "") -> int:
    """Append a signed checkpoint of every audit and ledger chain's head."""
    with transaction(make_sessionmaker(engine)) as db:
        anchors = audit.heads(db) + ledger_chain.heads(db)
    if note:
        anchors = [integrity.Anchor(a.chain, a.seq, a.hash, a.at, a.kind, note) for a in anchors]
    return integrity.write_anchors(anchor_file, anchors)


def backup(settings: Settings, engine: Engine, target: Path) -> str:
    """Write the backup and its checksum; returns the checksum."""
    if target.exists():
        raise BackupError(f"{target} exists; choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        source_path = Path(url.database or "")
        if not source_path.exists():
            raise BackupError(f"no database at {source_path}")
    anchor_heads(engine, settings.resolved_anchor_file, f"backup {target.name}")
    if url.get_backend_name() == "sqlite":
        with (
            contextlib.closing(sqlite3.connect(source_path)) as source,
            contextlib.closing(sqlite3.connect(target)) as dest,
        ):
            source.backup(dest)
    else:
        completed = _run(["pg_dump", "--format=custom", "--no-owner", f"--file={target}", _pg_dsn(url)])
        if completed.returncode != 0:
            target.unlink(missing_ok=True)
            raise BackupError(f"pg_dump failed (exit {completed.returncode}): {_last_line(completed)}")
    digest = sha256_of(target)
    checksum_file(target).write_text(f"{digest}  {target.name}\n")
    return digest


@dataclass
class Check:
    kind: str
    digest: str
    detail: str = ""
    problems: list[str] = field(default_factory=list)


def check(path: Path, *, require_checksum: bool = True) -> Check:
    """Validate a backup without restoring it. Raises BackupInvalid (bad) or BackupError (missing)."""
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    digest = sha256_of(path)
    sums = checksum_file(path)
    if sums.exists():
        recorded = sums.read_text().split()[:1]
        if recorded != [digest]:
            raise BackupInvalid(
                f"{path} does not match its checksum in {sums.name} (truncated, altered or another file)"
            )
    elif require_checksum:
        raise BackupError(f"no checksum beside {path} (expected {sums.name})")
    kind = _kind(path)
    if kind == "sqlite":
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                result = conn.execute("PRAGMA integrity_check").fetchall()
                tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupInvalid(f"{path} is not an intact SQLite database ({exc})") from exc
        if result != [("ok",)]:
            raise BackupInvalid(f"{path} is not an intact SQLite database ({result[0][0]})")
        return Check(kind, digest, f"{tables[0]} tables")
    completed = _run(["pg_restore", "--list", str(path)])
    if completed.returncode != 0:
        raise BackupInvalid(f"{path} is not a readable pg_dump archive: {_last_line(completed)}")
    items = [line for line in completed.stdout.splitlines() if line and not line.startswith(";")]
    return Check(kind, digest, f"{len(items)} archive items")


# --- restore -----------------------------------------------------------------------------------


def _restricted_to(log: integrity.AnchorLog, engine: Engine) -> integrity.AnchorLog:
    """The checkpoints a copy taken earlier must still agree with: those within its chains."""
    with transaction(make_sessionmaker(engine)) as db:
        lengths = {a.chain: a.seq for a in audit.heads(db) + ledger_chain.heads(db)}
    kept = integrity.AnchorLog(problems=list(log.problems), source=log.source)
    for chain, anchors in log.by_chain.items():
        within = [a for a in anchors if a.seq <= lengths.get(chain, 0)]
        if within:
            kept.by_chain[chain] = within
    return kept


def verify_database(engine: Engine, anchors: integrity.AnchorLog) -> list[str]:
    """The problems of every audit and ledger chain of the database behind ``engine``."""
    problems = list(anchors.problems)
    with transaction(make_sessionmaker(engine)) as db:
        for result in audit.verify_chains(db, anchors):
            if not result.ok:
                problems.append(f"{result.chain}: {result.problem}")
        for clinic_id in ledger_chain.clinics_with_ledgers(db, anchors):
            ledger = ledger_chain.verify_clinic(db, clinic_id, anchors)
            if not ledger.ok:
                problems.append(f"{ledger_chain.chain_name(clinic_id)}: {ledger.problem}")
    return problems


def _prepare(engine: Engine, anchor_file: Path) -> None:
    """Bring the restored copy to the current schema and verify it; raises BackupInvalid."""
    try:
        current = migrations.current_revision(engine)
    except Exception as exc:
        raise BackupInvalid(f"the backup is not a KetaCare database ({exc})") from exc
    if current is None:
        raise BackupInvalid("the backup is not a KetaCare database (no schema revision)")
    try:
        migrations.upgrade(engine)
    except Exception as exc:
        raise BackupInvalid(f"the backup (schema {current}) could not be upgraded: {exc}") from exc
    anchors = _restricted_to(integrity.read_anchors(anchor_file), engine)
    if problems := verify_database(engine, anchors):
        raise BackupInvalid("the restored copy does not verify: " + "; ".join(problems))


def _mark_restored(engine: Engine, anchor_file: Path, source: Path) -> None:
    """A restore line per chain: checkpoints of the history the restore discarded stop counting."""
    log = integrity.read_anchors(anchor_file)
    with transaction(make_sessionmaker(engine)) as db:
        heads = {a.chain: a for a in audit.heads(db) + ledger_chain.heads(db)}
    at = integrity.now_iso()
    lines = [
        integrity.Anchor(chain, a.seq, a.hash, at, "restore", f"restored from {source.name}")
        for chain, a in sorted(heads.items())
    ]
    lines += [
        integrity.Anchor(chain, 0, "0" * 64, at, "restore", f"restored from {source.name}")
        for chain in sorted(set(log.by_chain) - set(heads))
    ]
    integrity.write_anchors(anchor_file, lines)


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")


@dataclass
class Restored:
    kept: str  # where the database it replaced is kept
    drop_hint: str


def restore(settings: Settings, source: Path, *, require_checksum: bool = True) -> Restored:
    checked = check(source, require_checksum=require_checksum)
    url = make_url(settings.resolved_database_url)
    backend = "sqlite" if url.get_backend_name() == "sqlite" else "postgresql"
    if checked.kind != backend:
        raise BackupError(f"{source} is a {checked.kind} backup; this installation runs on {backend}")
    if backend == "sqlite":
        return _restore_sqlite(settings, source, Path(url.database or ""))
    return _restore_postgresql(settings, source, url)


@contextlib.contextmanager
def _no_server(settings: Settings) -> Iterator[None]:
    try:
        with integrity.held_lock(settings.server_lock_file, exclusive=True):
            yield
    except integrity.LockHeld as exc:
        raise BackupError(
            f"the app is running on this data directory (it holds {exc}); stop it before restoring"
        ) from exc


def _restore_sqlite(settings: Settings, source: Path, live: Path) -> Restored:
    live.parent.mkdir(parents=True, exist_ok=True)
    stamp = _stamp()
    staging = live.with_name(f".{live.name}.restore-{stamp}")
    with _no_server(settings):
        try:
            try:
                with (
                    contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
                    contextlib.closing(sqlite3.connect(staging)) as dest,
                ):
                    src.backup(dest)
                    if dest.execute("PRAGMA integrity_check").fetchall() != [("ok",)]:
                        raise BackupInvalid(f"{source} is not an intact SQLite database")
            except sqlite3.DatabaseError as exc:
                raise BackupInvalid(f"{source} is not an intact SQLite database ({exc})") from exc
            engine = make_engine(f"sqlite:///{staging}")
            try:
                _prepare(engine, settings.resolved_anchor_file)
            finally:
                engine.dispose()
            with contextlib.closing(sqlite3.connect(staging)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("PRAGMA journal_mode=DELETE")
            kept = ""
            if live.exists():
                old = live.with_name(f"{live.name}.old-{stamp}")
                with (
                    contextlib.closing(sqlite3.connect(live)) as current,
                    contextlib.closing(sqlite3.connect(old)) as keep,
                ):
                    current.backup(keep)  # the old database, whole (with what its WAL held)
                    current.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                kept = str(old)
            os.replace(staging, live)  # atomic: the old file or the new, never half of one
            for suffix in ("-wal", "-shm"):  # the old file's log must never be replayed on the new
                Path(f"{live}{suffix}").unlink(missing_ok=True)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{staging}{suffix}").unlink(missing_ok=True)
        engine = make_engine(f"sqlite:///{live}")
        try:
            _mark_restored(engine, settings.resolved_anchor_file, source)
        finally:
            engine.dispose()
    return Restored(kept or "(there was no database)", f"rm {kept}" if kept else "")


def _admin_engine(url: URL) -> Engine:
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def _restore_postgresql(settings: Settings, source: Path, url: URL) -> Restored:
    live = url.database or ""
    stamp = _stamp()
    staging, old = f"{live}_restore_{stamp}"[:63], f"{live}_old_{stamp}"[:63]
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{staging}"'))
        switched = False
        try:
            staging_url = url.set(database=staging)
            completed = _run(
                [
                    "pg_restore",
                    "--no-owner",
                    "--exit-on-error",
                    "--single-transaction",
                    f"--dbname={_pg_dsn(staging_url)}",
                    str(source),
                ]
            )
            if completed.returncode != 0:
                raise BackupInvalid(
                    f"pg_restore failed (exit {completed.returncode}): {_last_line(completed)}"
                )
            engine = make_engine(staging_url.render_as_string(hide_password=False))
            try:
                _prepare(engine, settings.resolved_anchor_file)
            finally:
                engine.dispose()
            with admin.connect() as conn:
                others = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
                    ),
                    {"d": live},
                ).scalar_one()
                if others:
                    raise BackupError(
                        f"{others} connection(s) are open to {live}; stop the app before restoring"
                    )
            switcher = create_engine(url.set(database="postgres"))
            try:
                with switcher.begin() as conn:  # both renames or neither
                    conn.execute(text(f'ALTER DATABASE "{live}" RENAME TO "{old}"'))
                    conn.execute(text(f'ALTER DATABASE "{staging}" RENAME TO "{live}"'))
            except DBAPIError as exc:
                raise BackupError(f"could not switch databases: {exc.orig}") from exc
            finally:
                switcher.dispose()
            switched = True
        finally:
            if not switched:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{staging}" WITH (FORCE)'))
    finally:
        admin.dispose()
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        _mark_restored(engine, settings.resolved_anchor_file, source)
    finally:
        engine.dispose()
    return Restored(old, f"psql -d postgres -c 'DROP DATABASE \"{old}\"'")
