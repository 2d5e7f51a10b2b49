"""The ``ketacare`` command: serve, demo, db, user, clinic, audit, backup and restore.

Errors are one clear line on stderr and exit code 2; nothing is half-done.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import pyotp
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import URL, Engine, make_url

from ketacare import migrations
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.roles import PrescriberKind, Role
from ketacare.config import Environment, Settings, load_settings
from ketacare.db import make_engine, make_sessionmaker, transaction
from ketacare.demo import DemoLogin
from ketacare.errors import KetaCareError
from ketacare.pharmacology.cli import simulate

app = typer.Typer(help="KetaCare: ketamine pain-therapy programme.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema: upgrade, downgrade, current.", no_args_is_help=True)
user_app = typer.Typer(help="Accounts: create, set-password, set-role.", no_args_is_help=True)
clinic_app = typer.Typer(help="Clinics (tenants).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(clinic_app, name="clinic")
app.add_typer(audit_app, name="audit")
app.command("simulate")(simulate)
console = Console()
err = Console(stderr=True)


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def settings_or_fail(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        fail("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()))


def engine_for(settings: Settings) -> Engine:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)


# --- serve and demo ----------------------------------------------------------------------


def _serve(settings: Settings, host: str, port: int, migrate: bool) -> None:
    import uvicorn

    from ketacare.app import create_app

    engine = engine_for(settings)
    if migrate:
        migrations.upgrade(engine)
    try:
        migrations.ensure_at_head(engine)
    except migrations.DatabaseNotMigrated as exc:
        fail(str(exc))
    console.print(
        f"KetaCare on [bold]http://{host}:{port}[/] ({settings.environment.value}, "
        f"{make_url(settings.resolved_database_url).get_backend_name()})"
    )
    uvicorn.run(
        create_app(settings, engine=engine), host=host, port=port, log_level="warning", proxy_headers=False
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    migrate: Annotated[bool, typer.Option(help="Upgrade the database schema first.")] = False,
) -> None:
    """Serve the web app and API. Refuses an unmigrated database unless --migrate."""
    _serve(settings_or_fail(), host, port, migrate)


def _demo_settings(data_dir: Path) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file = data_dir / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
        key_file.chmod(0o600)
    overrides: dict[str, object] = {
        "environment": Environment.demo,
        "data_dir": data_dir,
        "secret_key": key_file.read_text().strip(),
    }
    return settings_or_fail(**overrides)


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo database lives.")] = Path("data/demo"),
    patients: Annotated[int, typer.Option(min=2, max=200_000, help="Patients per clinic.")] = 150,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 2026,
    refresh: Annotated[bool, typer.Option(help="Throw away the demo database and build it again.")] = False,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the web app afterwards.")
    ] = True,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Build (or refresh) a demo database on SQLite with seeded data, print the logins, serve it."""
    from ketacare import demo as demo_data

    settings = _demo_settings(data_dir)
    db_file = data_dir / "ketacare.sqlite3"
    if refresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    engine = engine_for(settings)
    migrations.upgrade(engine)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        empty = not auth.clinic_count(db)
        logins = demo_data.seed(db, patients_per_clinic=patients, rng_seed=seed) if empty else None
    if logins:
        _print_logins(logins)
    else:
        console.print(f"Using the existing demo database in {data_dir} (--refresh builds it anew).")
        console.print(
            f"Demo logins: admin.north, dr.north, np.north, nurse.north, researcher.north, "
            f"auditor.north, patienta.north (and .bay); password [bold]{demo_data.DEMO_PASSWORD}[/]. "
            "For admins and prescribers: `ketacare demo-code USERNAME`."
        )
    engine.dispose()
    if serve_after:
        _serve(settings, host, port, migrate=False)


def _print_logins(logins: Sequence[DemoLogin]) -> None:
    from ketacare.demo import DEMO_PASSWORD

    table = Table(title="Demo logins (demo data only)")
    for column in ("clinic", "username", "role", "two-factor secret"):
        table.add_column(column, no_wrap=True)
    for login in logins:
        table.add_row(login.clinic, login.username, login.role, login.totp_secret or "—")
    console.print(table)
    console.print(f"Password for every demo account: [bold]{DEMO_PASSWORD}[/]")
    console.print(
        "Admins and prescribers also need a two-factor code: add the secret to an "
        "authenticator app, or run `ketacare demo-code USERNAME`."
    )


# --- db --------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "heads") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    settings = settings_or_fail()
    migrations.upgrade(engine_for(settings), revision)
    console.print(f"Database at {migrations.current_revision(engine_for(settings))}.")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for empty.")],
) -> None:
    """Undo migrations down to REVISION. 'base' removes every table: take a backup first."""
    settings = settings_or_fail()
    migrations.downgrade(engine_for(settings), revision)
    console.print(f"Database at {migrations.current_revision(engine_for(settings)) or 'base (empty)'}.")


@db_app.command("current")
def db_current() -> None:
    """Print the revision the database is at, and the newest one."""
    engine = engine_for(settings_or_fail())
    console.print(
        f"current: {migrations.current_revision(engine) or 'none'}  head: {migrations.head_revision()}"
    )


# --- clinics and users ----------------------------------------------------------------------


@clinic_app.command("create")
def clinic_create(
    name: Annotated[str, typer.Option()],
    slug: Annotated[str, typer.Option(help="Short lower-case id, e.g. 'north'.")],
    record_prefix: Annotated[str, typer.Option(help="Prefix of record numbers, e.g. 'NSP'.")],
    time_zone: Annotated[str, typer.Option()] = "America/New_York",
) -> None:
    """Add a clinic (tenant)."""
    import zoneinfo

    if not slug.isidentifier() or not slug.islower():
        fail("--slug must be lower-case letters, digits or underscores")
    if not record_prefix.isalnum() or len(record_prefix) > 8:
        fail("--record-prefix must be 1 to 8 letters or digits")
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        fail(f"unknown time zone {time_zone!r}")
    factory = make_sessionmaker(_migrated_engine())
    try:
        with transaction(factory) as db:
            auth.create_clinic(db, None, name, slug, record_prefix, time_zone)
    except KetaCareError as exc:
        fail(_describe(exc))
    console.print(f"Clinic {slug!r} created.")


def _migrated_engine() -> Engine:
    engine = engine_for(settings_or_fail())
    try:
        migrations.ensure_at_head(engine)
    except migrations.DatabaseNotMigrated as exc:
        fail(str(exc))
    return engine


def _password(value: str | None) -> str:
    if value is not None:
        return value
    if env_value := os.environ.get("KETACARE_NEW_PASSWORD"):
        return env_value
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Again: "):
        fail("the two passwords differ")
    return first


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Argument()],
    clinic: Annotated[str, typer.Option(help="Clinic slug.")],
    role: Annotated[Role, typer.Option()],
    full_name: Annotated[str, typer.Option()],
    prescriber_kind: Annotated[PrescriberKind | None, typer.Option()] = None,
    password: Annotated[
        str | None, typer.Option(help="Prompted for when omitted (or KETACARE_NEW_PASSWORD).")
    ] = None,
) -> None:
    """Create an account. Prescribers and admins enrol two-factor authentication at first log-in."""
    if role == Role.patient:
        fail("patient accounts are created from the patient's record in the web app")
    factory = make_sessionmaker(_migrated_engine())
    try:
        with transaction(factory) as db:
            found = auth.clinic_by_slug(db, clinic)
            auth.create_user(
                db,
                None,
                found.id,
                auth.NewUser(
                    username=username,
                    full_name=full_name,
                    role=role,
                    password=_password(password),
                    prescriber_kind=prescriber_kind,
                ),
            )
    except KetaCareError as exc:
        fail(_describe(exc))
    console.print(f"User {username!r} created as {role.value}.")


def _describe(exc: KetaCareError) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "; ".join(f"{k}: {v}" for k, v in errors.items())
    return str(exc)


@user_app.command("set-password")
def user_set_password(
    username: Annotated[str, typer.Argument()],
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted.")] = None,
) -> None:
    """Set a new password; the user's open sessions end."""
    factory = make_sessionmaker(_migrated_engine())
    try:
        with transaction(factory) as db:
            auth.set_password(db, None, auth.user_by_username(db, username), _password(password))
    except KetaCareError as exc:
        fail(_describe(exc))
    console.print(f"Password of {username!r} changed.")


@user_app.command("set-role")
def user_set_role(
    username: Annotated[str, typer.Argument()],
    role: Annotated[Role, typer.Argument()],
    prescriber_kind: Annotated[PrescriberKind | None, typer.Option()] = None,
) -> None:
    """Change a user's role (audited as a privilege change)."""
    factory = make_sessionmaker(_migrated_engine())
    try:
        with transaction(factory) as db:
            auth.set_role(db, None, auth.user_by_username(db, username), role, prescriber_kind)
    except KetaCareError as exc:
        fail(_describe(exc))
    console.print(f"{username!r} is now {role.value}.")


@app.command("demo-code")
def demo_code(
    username: Annotated[str, typer.Argument()],
    data_dir: Annotated[Path, typer.Option(help="The demo's data directory.")] = Path("data/demo"),
) -> None:
    """Print a demo user's current two-factor code (demo database only)."""
    if not (data_dir / "ketacare.sqlite3").exists():
        fail(f"no demo database in {data_dir}; run `ketacare demo` first")
    settings = _demo_settings(data_dir)
    factory = make_sessionmaker(engine_for(settings))
    with transaction(factory) as db:
        try:
            user = auth.user_by_username(db, username)
        except KetaCareError as exc:
            fail(_describe(exc))
        if not user.totp_secret:
            fail(f"{username!r} has no two-factor secret")
        console.print(pyotp.TOTP(user.totp_secret).now())


@app.command("purge-form-hits")
def purge_form_hits(
    hours: Annotated[int, typer.Option(min=1, help="Keep the hits of the last HOURS.")] = 24,
) -> None:
    """Forget public-form rate-limit records older than HOURS (run daily, e.g. from cron)."""
    import datetime as dt

    from ketacare.db import utcnow
    from ketacare.directory import service as directory

    factory = make_sessionmaker(_migrated_engine())
    with transaction(factory) as db:
        removed = directory.purge_hits(db, utcnow() - dt.timedelta(hours=hours))
    console.print(f"Removed {removed} rate-limit records older than {hours} h.")


# --- audit ------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify() -> None:
    """Re-compute the hash chain; exit 1 and name the first bad entry if anything was altered."""
    factory = make_sessionmaker(_migrated_engine())
    with transaction(factory) as db:
        result = audit.verify_database(db)
    if result.ok:
        console.print(f"[green]Audit trail intact:[/] {result.checked} entries verified.")
        return
    err.print(
        f"[bold red]Audit trail altered:[/] {result.problem} (first bad entry: {result.first_bad_seq}).",
        highlight=False,
    )
    raise typer.Exit(1)


# --- backup and restore -------------------------------------------------------------------


@app.command()
def backup(target: Annotated[Path, typer.Argument(help="File to write the backup to.")]) -> None:
    """Back up the database: SQLite's online backup API, or pg_dump (custom format) for PostgreSQL."""
    settings = settings_or_fail()
    if target.exists():
        fail(f"{target} exists; choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        source_path = url.database or ""
        if not Path(source_path).exists():
            fail(f"no database at {source_path}")
        with sqlite3.connect(source_path) as source, sqlite3.connect(target) as dest:
            source.backup(dest)
    else:
        _run_pg(["pg_dump", "--format=custom", "--no-owner", f"--file={target}", _pg_dsn(url)])
    console.print(f"Backup written to {target}.")


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A file written by `ketacare backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm replacing the current database.")] = False,
) -> None:
    """Replace the current database with a backup. Stop the app first."""
    if not source.exists():
        fail(f"no backup at {source}")
    if not yes:
        fail("restore replaces the whole database; add --yes to confirm")
    settings = settings_or_fail()
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(source) as check:
            if check.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                fail(f"{source} is not an intact SQLite database")
        target_path = Path(url.database or "")
        target_path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(source) as src, sqlite3.connect(target_path) as dest:
            src.backup(dest)
    else:
        _run_pg(
            ["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={_pg_dsn(url)}", str(source)]
        )
    console.print(f"Database restored from {source}.")


def _pg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _run_pg(command: list[str]) -> None:
    if shutil.which(command[0]) is None:
        fail(f"{command[0]} is not installed (Debian package postgresql-client)")
    # The command is one of ours (pg_dump / pg_restore) with arguments we built, never a shell string.
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if completed.returncode != 0:
        last_line = completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "no message"
        fail(f"{command[0]} failed (exit {completed.returncode}): {last_line}")


