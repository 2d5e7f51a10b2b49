"""The ``ketacare`` command: serve, demo, db, user, clinic, audit, backup, restore and hl7.

Errors are one clear line on stderr and exit code 2; nothing is half-done.
"""

from __future__ import annotations

import contextlib
import enum
import getpass
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pyotp
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, make_url

from ketacare import backups, integrity, migrations
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
        settings = load_settings(**overrides)
    except ValidationError as exc:
        fail("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()))
    try:
        integrity.configure_from(settings)  # the audit and ledger chains' key
    except integrity.ChainKeyMissing as exc:
        fail(str(exc))
    return settings


def engine_for(settings: Settings) -> Engine:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)


# --- serve and demo ----------------------------------------------------------------------


def _serve(settings: Settings, host: str, port: int, migrate: bool) -> None:
    # Held (shared) from before the first query until the server stops: `ketacare restore`
    # refuses to replace the database meanwhile, and no server starts while a restore runs.
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(integrity.held_lock(settings.server_lock_file, exclusive=False))
        except integrity.LockHeld:
            fail("a restore is replacing the database; start the app when it has finished")
        _serve_locked(settings, host, port, migrate)


def _serve_locked(settings: Settings, host: str, port: int, migrate: bool) -> None:
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
    for secret_file in (key_file, data_dir / "chain_key"):
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(48))
            secret_file.chmod(0o600)
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
    live: Annotated[
        bool,
        typer.Option(
            help="Also take HL7 vitals on --hl7-port and replay a bedside monitor for each running "
            "session, so the live board moves."
        ),
    ] = False,
    hl7_port: Annotated[
        int, typer.Option(min=0, max=65535, help="The HL7 listener's port for --live.")
    ] = 2575,
) -> None:
    """Build (or refresh) a demo database on SQLite with seeded data, print the logins, serve it."""
    from ketacare import demo as demo_data

    if live and not serve_after:
        fail("--live replays vitals while the web app serves: leave out --no-serve")
    settings = _demo_settings(data_dir)
    db_file = data_dir / "ketacare.sqlite3"
    if refresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
        settings.resolved_anchor_file.unlink(missing_ok=True)  # checkpoints of the discarded chains
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
        with _live_feed(settings, hl7_port) if live else contextlib.nullcontext():
            _serve(settings, host, port, migrate=False)


LIVE_INTERVAL_S = 5.0  # a monitor reading every few seconds keeps the board moving
LIVE_SPIKE_AFTER_S = 60.0  # then one systolic reading over the 180 mmHg default alarm


@contextlib.contextmanager
def _live_feed(settings: Settings, hl7_port: int) -> Iterator[None]:
    """``demo --live``: the HL7 listener in this process, and a simulated bedside monitor per
    running session sending ORU^R01 to it over a real socket until the web app stops."""
    import datetime as dt
    import threading
    import uuid

    from ketacare.interop.hl7v2 import mllp, monitor
    from ketacare.sessions.demo_data import LiveSession, running_sessions

    engine = engine_for(settings)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        sessions = running_sessions(db)
    background = mllp.BackgroundListener(mllp.MLLPListener(mllp.database_ingest(factory)), port=hl7_port)
    try:
        background.__enter__()
    except OSError as exc:
        fail(f"cannot listen for HL7 on port {hl7_port}: {exc.strerror or exc}")
    host, bound = background.address
    stop = threading.Event()

    def replay(session: LiveSession) -> None:
        """Readings from the session's baseline, each stamped when it is sent."""
        points = monitor.trajectory(
            dt.datetime.now(dt.UTC),
            int(3600 / LIVE_INTERVAL_S),
            interval_s=LIVE_INTERVAL_S,
            seed=session.session_id,
            baseline={**monitor.DEFAULT_BASELINE, **session.baseline},
            sbp_rise_mmhg=10.0,
            peak_minutes=20.0,
            sbp_spike_at=int(LIVE_SPIKE_AFTER_S / LIVE_INTERVAL_S),
        )
        device, prefix = f"DEMO-MONITOR-{session.session_id}", uuid.uuid4().hex[:8]
        try:
            with monitor.MonitorConnection(host, bound) as connection:
                for n, point in enumerate(points):
                    if stop.wait(LIVE_INTERVAL_S if n else 0.0):
                        return
                    reply = connection.send(
                        monitor.build_oru(
                            clinic_slug=session.clinic_slug,
                            record_number=session.record_number,
                            device_id=device,
                            control_id=f"{prefix}-{n:06d}",
                            observed_at=dt.datetime.now(dt.UTC),
                            vitals=point.values,
                        )
                    )
                    if reply.ack_code != "AA":
                        err.print(
                            f"Monitor for {session.record_number} stopped: {reply.text}", highlight=False
                        )
                        return
        except OSError as exc:
            err.print(f"Monitor for {session.record_number} stopped: {exc}", highlight=False)

    console.print(f"HL7 v2 (MLLP) listener on {host}:{bound}.", highlight=False)
    for s in sessions:
        console.print(
            f"Monitor for {s.record_number} ({s.clinic_slug}): a reading every {LIVE_INTERVAL_S:g} s, "
            f"a systolic spike after {LIVE_SPIKE_AFTER_S:g} s; watch /sessions-board.",
            highlight=False,
        )
    if not sessions:
        console.print("No running session to replay: start an infusion on /sessions, or use --refresh.")
    monitors = [threading.Thread(target=replay, args=(s,), daemon=True) for s in sessions]
    for thread in monitors:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in monitors:
            thread.join(timeout=10)
        background.__exit__(None, None, None)
        engine.dispose()


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
def audit_verify(
    anchor: Annotated[
        bool, typer.Option(help="Anchor each chain's head afterwards when everything verified.")
    ] = True,
) -> None:
    """Re-compute every audit chain (the system's and each clinic's) and check it against the
    signed checkpoints in the anchor file; exit 1 naming the first bad entry of each bad chain."""
    settings = settings_or_fail()
    anchors = integrity.read_anchors(settings.resolved_anchor_file)
    factory = make_sessionmaker(_migrated_engine())
    with transaction(factory) as db:
        results = audit.verify_chains(db, anchors)
        heads = audit.heads(db)
    bad = len(anchors.problems)
    for problem in anchors.problems:
        err.print(f"[bold red]Anchor file {settings.resolved_anchor_file}:[/] {problem}.", highlight=False)
    for result in results:
        if result.ok:
            continue
        bad += 1
        where = f" (first bad entry: {result.first_bad_seq})" if result.first_bad_seq else ""
        err.print(
            f"[bold red]Audit trail altered:[/] {result.chain}: {result.problem}{where}.", highlight=False
        )
    if bad:
        raise typer.Exit(1)
    if anchor:
        integrity.write_anchors(settings.resolved_anchor_file, heads)
    total = sum(r.checked for r in results)
    console.print(
        f"[green]Audit trail intact:[/] {total} entries verified in {len(results)} chains"
        f"{' and anchored' if anchor else ''}."
    )


# --- backup and restore -------------------------------------------------------------------


@app.command()
def backup(
    target: Annotated[Path, typer.Argument(help="File to write the backup to; or `verify`.")],
    checked_file: Annotated[
        Path | None, typer.Argument(help="With `verify`: the backup file to check.", show_default=False)
    ] = None,
) -> None:
    """Back up the database (SQLite's online backup API, or pg_dump in custom format) and write
    FILE.sha256 beside it. `ketacare backup verify FILE` checks a backup without restoring it:
    exit 0 intact, 1 damaged (checksum or contents), 2 no such file or no checksum."""
    if checked_file is not None:
        if target != Path("verify"):
            fail("one file to back up to, or `verify FILE`")
        _backup_verify(checked_file)
        return
    settings = settings_or_fail()
    try:
        digest = backups.backup(settings, engine_for(settings), target)
    except backups.BackupError as exc:
        fail(str(exc))
    console.print(f"Backup written to {target} (sha256 {digest[:16]}..., in {target.name}.sha256).")


def _backup_verify(path: Path) -> None:
    try:
        found = backups.check(path)
    except backups.BackupInvalid as exc:
        err.print(f"[bold red]Backup damaged:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except backups.BackupError as exc:
        fail(str(exc))
    console.print(f"[green]Backup intact:[/] {path} ({found.kind}, {found.detail}, sha256 matches).")


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A file written by `ketacare backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm replacing the current database.")] = False,
    without_checksum: Annotated[
        bool, typer.Option(help="Accept a backup that has no FILE.sha256 (taken before checksums).")
    ] = False,
) -> None:
    """Replace the database with a backup: validated first, restored beside the live database,
    verified, and only then switched in; the old database is kept. Stop the app first."""
    if not source.exists():
        fail(f"no backup at {source}")
    if not yes:
        fail("restore replaces the whole database; add --yes to confirm")
    settings = settings_or_fail()
    try:
        done = backups.restore(settings, source, require_checksum=not without_checksum)
    except backups.BackupError as exc:
        fail(f"{exc}. Nothing was changed.")
    console.print(f"Database restored from {source}. The database it replaced is kept as {done.kept}.")
    if done.drop_hint:
        console.print(f"When the restored data is confirmed, remove the old one: {done.drop_hint}")


# --- hl7 ----------------------------------------------------------------------------------

hl7_app = typer.Typer(help="HL7 v2 vital signs from bedside monitors over MLLP.", no_args_is_help=True)
app.add_typer(hl7_app, name="hl7")


class Hl7Coding(enum.StrEnum):
    mdc = "mdc"
    loinc = "loinc"


@hl7_app.command("listen")
def hl7_listen(
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for all.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one.")] = 2575,
    max_message_bytes: Annotated[
        int, typer.Option(min=1024, help="A larger message closes the connection.")
    ] = 1024 * 1024,
    idle_timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds without a byte before a connection is closed.")
    ] = 900.0,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Messages stored in parallel.")] = 8,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Receive ORU^R01 vital signs from monitors; ACK after commit, NAK with an ERR otherwise."""
    import asyncio
    import logging
    import signal
    import threading

    from ketacare.interop.hl7v2 import mllp

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        fail(f"unknown log level {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = _migrated_engine()
    listener = mllp.MLLPListener(
        mllp.database_ingest(make_sessionmaker(engine)),
        max_message_bytes=max_message_bytes,
        idle_timeout_s=idle_timeout,
        workers=workers,
    )

    async def run() -> None:
        try:
            bound_host, bound_port = await listener.start(host, port)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        console.print(f"Listening for HL7 v2 (MLLP) on {bound_host}:{bound_port}", highlight=False)
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
        sweeper = asyncio.create_task(_sweep_escalations(make_sessionmaker(engine), stop))
        await stop.wait()
        await sweeper
        await listener.close()
        console.print("HL7 listener stopped.")

    try:
        _run_async(run)
    finally:
        engine.dispose()


def _run_async(main: Any) -> None:
    """asyncio.run(main()), or, when this thread already runs an event loop (a host embedding the
    CLI, or a test process that drove a browser), on a thread of its own, passing its outcome back."""
    import asyncio
    import threading

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(main())
        return
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # re-raised in the caller's thread
            outcome.append(exc)

    worker = threading.Thread(target=target, name="ketacare-cli-loop")
    worker.start()
    worker.join()
    if outcome:
        raise outcome[0]


async def _sweep_escalations(factory: Any, stop: Any, every_s: float = 5.0) -> None:
    """Escalate unacknowledged alarms to the prescriber even when no live board is open."""
    import asyncio
    import logging

    from ketacare.sessions import monitoring as session_monitoring

    log = logging.getLogger("ketacare.hl7")

    def sweep() -> int:
        with transaction(factory) as db:
            return session_monitoring.sweep_escalations(db)

    while not stop.is_set():
        try:
            escalated = await asyncio.to_thread(sweep)
            if escalated:
                log.warning("escalated %d alarm(s) to the prescriber", escalated)
        except Exception:  # a database blip: try again at the next tick
            log.exception("escalation sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


@hl7_app.command("send")
def hl7_send(
    clinic: Annotated[str, typer.Option(help="Clinic slug, sent as MSH-4.")],
    record: Annotated[str, typer.Option(help="The patient's record number, sent as PID-3.")],
    host: Annotated[str, typer.Option(help="The listener's address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 2575,
    count: Annotated[int, typer.Option(min=1, max=100_000, help="Messages to send.")] = 10,
    interval: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds between messages, in real time; 0 sends at once, back-dated."),
    ] = 0.0,
    device: Annotated[str, typer.Option(help="Device id, sent as MSH-3.")] = "SIM-MONITOR-1",
    codes: Annotated[Hl7Coding, typer.Option(help="Observation codes: IEEE 11073 (mdc) or LOINC.")] = (
        Hl7Coding.mdc
    ),
    spike: Annotated[bool, typer.Option(help="Make the middle reading a systolic spike (190 mmHg).")] = False,
) -> None:
    """Simulate a bedside monitor: send a course of vitals for one patient and wait for each ACK."""
    import datetime as dt

    from ketacare.interop.hl7v2 import monitor

    step = interval if interval > 0 else 60.0
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now if interval > 0 else now - dt.timedelta(seconds=step * (count - 1))
    points = monitor.trajectory(start, count, interval_s=step, sbp_spike_at=count // 2 if spike else None)
    messages = monitor.messages_for(
        points, clinic_slug=clinic, record_number=record, device_id=device, coding=codes.value
    )
    report = monitor.send_messages(host, port, messages, pause_s=interval)
    if len(report.unanswered) == count:
        fail(f"cannot reach an HL7 listener on {host}:{port}: {report.error}")
    console.print(
        f"Sent {count - len(report.unanswered)} of {count}: {len(report.acknowledged)} acknowledged, "
        f"{len(report.refused)} refused.",
        highlight=False,
    )
    for control_id, reply in list(report.refused.items())[:5]:
        err.print(f"  {control_id}: {reply.ack_code} {reply.error_code} {reply.text}", highlight=False)
    if report.error:
        err.print(f"  connection lost: {report.error}", highlight=False)
    if report.refused or report.unanswered:
        raise typer.Exit(1)


# --- ledger -------------------------------------------------------------------------------

ledger_app = typer.Typer(help="The controlled-substance ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("verify")
def ledger_verify(
    clinic: Annotated[str | None, typer.Option(help="Clinic slug; every clinic when omitted.")] = None,
    anchor: Annotated[
        bool, typer.Option(help="Anchor each chain's head afterwards when everything verified.")
    ] = True,
) -> None:
    """Re-compute each clinic's ledger chain, lots, inventories and balances and check them
    against the signed checkpoints in the anchor file; exit 1 naming the first bad entry."""
    from ketacare.ledger import chain as ledger_chain

    settings = settings_or_fail()
    anchors = integrity.read_anchors(settings.resolved_anchor_file)
    factory = make_sessionmaker(_migrated_engine())
    bad = len(anchors.problems)
    for problem in anchors.problems:
        err.print(f"[bold red]Anchor file {settings.resolved_anchor_file}:[/] {problem}.", highlight=False)
    with transaction(factory) as db:
        try:
            target_ids = [auth.clinic_by_slug(db, clinic).id] if clinic else None
        except KetaCareError as exc:
            fail(_describe(exc))
        if target_ids is None:
            target_ids = sorted(
                set(ledger_chain.clinics_with_ledgers(db, anchors)) | set(auth.clinic_ids(db))
            )
        for clinic_id in target_ids:
            label = _clinic_label(db, clinic_id)
            result = ledger_chain.verify_clinic(db, clinic_id, anchors)
            if result.ok:
                console.print(f"[green]{label}: ledger intact[/], {result.checked} entries verified.")
                continue
            bad += 1
            where = f" (first bad entry: {result.first_bad_seq})" if result.first_bad_seq else ""
            err.print(f"[bold red]{label}: ledger altered:[/] {result.problem}{where}.", highlight=False)
        if not target_ids:
            console.print("No clinic has ledger entries yet.")
        heads = ledger_chain.heads(db)
    if bad:
        raise typer.Exit(1)
    if anchor and not clinic:
        integrity.write_anchors(settings.resolved_anchor_file, heads)


def _clinic_label(db: Any, clinic_id: int) -> str:
    try:
        return auth.clinic(db, clinic_id).slug
    except KetaCareError:
        return f"clinic {clinic_id} (no longer in the clinics table)"


# --- outcomes and the registry -----------------------------------------------------------

report_app = typer.Typer(help="Reports: the outcomes registry.", no_args_is_help=True)
export_app = typer.Typer(
    help="Exports: the research dataset (Safe Harbor, or a limited data set).", no_args_is_help=True
)
outcomes_app = typer.Typer(
    help="Follow-up questionnaires: send due links and reminders.", no_args_is_help=True
)
app.add_typer(report_app, name="report")
app.add_typer(export_app, name="export")
app.add_typer(outcomes_app, name="outcomes")


@report_app.command("registry")
def report_registry(
    out: Annotated[Path, typer.Option(help="Directory for registry.html and one CSV per table.")],
    clinic: Annotated[
        str | None,
        typer.Option(
            help="Clinic slug; every clinic, de-identified with small cells suppressed, when omitted."
        ),
    ] = None,
) -> None:
    """Write the registry report: a standalone HTML page with its charts and a CSV of every table."""
    import datetime as dt

    from rich.progress import Progress

    from ketacare.analytics import report as rendering
    from ketacare.analytics import service as analytics

    factory = make_sessionmaker(_migrated_engine())
    with Progress(console=console) as progress, transaction(factory) as db:
        task = progress.add_task("Registry report", total=2)
        try:
            clinic_id = auth.clinic_by_slug(db, clinic).id if clinic else None
        except KetaCareError as exc:
            fail(_describe(exc))
        report = analytics.operator_report(db, clinic_id, dt.datetime.now(dt.UTC).date())
        progress.advance(task)
        written = rendering.write(report, out)
        progress.advance(task)
    rows = len(report.table("summary").rows)
    console.print(
        f"Registry report ({report.scope}): {rows} summary rows; wrote {len(written)} files to {out}."
    )


def _export(out: Path, method: str, agreement: int | None, clinic: str | None) -> None:
    from rich.progress import Progress

    from ketacare.analytics import service as analytics

    factory = make_sessionmaker(_migrated_engine())
    with Progress(console=console) as progress, transaction(factory) as db:
        task = progress.add_task("De-identified export", total=2)
        try:
            clinic_id = auth.clinic_by_slug(db, clinic).id if clinic else None
            data = analytics.deidentified(db, None, method, agreement, clinic_id=clinic_id)
        except KetaCareError as exc:
            fail(_describe(exc))
        progress.advance(task)
        written = data.write(out)
        progress.advance(task)
    console.print(f"{method} dataset: {data.rows()} rows in {len(written)} files written to {out}.")


ClinicOption = Annotated[str | None, typer.Option(help="Clinic slug; every clinic when omitted.")]


@export_app.command("safe-harbor")
def export_safe_harbor(
    out: Annotated[
        Path, typer.Option(help="Directory for the Parquet files, data_dictionary.csv, README.txt.")
    ],
    clinic: ClinicOption = None,
) -> None:
    """De-identified by HIPAA Safe Harbor (45 CFR 164.514(b)(2)): years only, ages 90+ grouped,
    3-digit ZIPs, no free text; pseudonyms from a random key made for this export and discarded."""
    _export(out, "safe_harbor", None, clinic)


@export_app.command("limited")
def export_limited(
    out: Annotated[
        Path, typer.Option(help="Directory for the Parquet files, data_dictionary.csv, README.txt.")
    ],
    agreement: Annotated[
        int, typer.Option(help="The active data use agreement's number (ketacare agreement list).")
    ],
    clinic: Annotated[str, typer.Option(help="The clinic whose agreement it is.")],
) -> None:
    """A limited data set (HIPAA 45 CFR 164.514(e)): dates to the day, shifted per patient, under
    an active data use agreement of the clinic (refused without one)."""
    _export(out, "limited", agreement, clinic)


agreement_app = typer.Typer(help="Data use agreements for limited data sets.", no_args_is_help=True)
app.add_typer(agreement_app, name="agreement")


@agreement_app.command("add")
def agreement_add(
    clinic: Annotated[str, typer.Option(help="Clinic slug.")],
    recipient: Annotated[str, typer.Option(help="Who receives the data.")],
    purpose: Annotated[str, typer.Option(help="The research it is for.")],
    starts_on: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")],
    ends_on: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD.")],
    approved_by: Annotated[str, typer.Option(help="Who approved it for the clinic.")],
) -> None:
    """Record a data use agreement."""
    from ketacare.analytics import service as analytics
    from ketacare.analytics.schemas import AgreementIn
    from ketacare.validation import parse

    factory = make_sessionmaker(_migrated_engine())
    with transaction(factory) as db:
        try:
            clinic_id = auth.clinic_by_slug(db, clinic).id
            data = parse(
                AgreementIn,
                {"recipient": recipient, "purpose": purpose, "starts_on": starts_on, "ends_on": ends_on,
                 "approved_by": approved_by},
            )  # fmt: skip
            dua = analytics.record_agreement(db, None, clinic_id, data)
        except KetaCareError as exc:
            fail(_describe(exc))
        console.print(f"Data use agreement #{dua.id} recorded for {clinic}.", highlight=False)


@agreement_app.command("list")
def agreement_list(clinic: ClinicOption = None) -> None:
    """The data use agreements (of one clinic, or every clinic)."""
    from ketacare.analytics import service as analytics

    factory = make_sessionmaker(_migrated_engine())
    with transaction(factory) as db:
        try:
            clinic_id = auth.clinic_by_slug(db, clinic).id if clinic else None
        except KetaCareError as exc:
            fail(_describe(exc))
        for d in analytics.agreements(db, clinic_id):
            state = "revoked" if d.revoked_at else "recorded"
            console.print(
                f"#{d.id} {d.recipient}: {d.starts_on} to {d.ends_on}, approved by {d.approved_by} ({state})",
                highlight=False,
            )


@outcomes_app.command("send-due")
def outcomes_send_due(
    base_url: Annotated[str, typer.Option(help="The address patients open, e.g. https://clinic.example.org")],
) -> None:
    """E-mail links for follow-ups now due, and one reminder for those left unanswered (run daily)."""
    import datetime as dt

    from ketacare.outcomes import mail as outcome_mail
    from ketacare.outcomes import service as outcomes

    settings = settings_or_fail()
    factory = make_sessionmaker(_migrated_engine())
    with transaction(factory) as db:
        outgoing = outcomes.send_due(db, settings.secret_key, base_url, dt.datetime.now(dt.UTC))
    sent = sum(outcome_mail.send(settings, message) for message in outgoing)
    console.print(f"{len(outgoing)} links issued, {sent} e-mails sent.")


# --- fhir ---------------------------------------------------------------------------------

fhir_app = typer.Typer(help="FHIR R4: bulk export to NDJSON and import from NDJSON.", no_args_is_help=True)
app.add_typer(fhir_app, name="fhir")

# --- fhir export (the bulk export's commands go here) -------------------------------------


@fhir_app.command("export")
def fhir_export(
    out: Annotated[Path, typer.Option(help="Directory for the NDJSON files and manifest.json.")],
    clinic: Annotated[str | None, typer.Option(help="Clinic slug (needed when there are several).")] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="Comma list of resource types, e.g. Patient,Observation.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only what changed since this FHIR instant, e.g. 2026-01-01T00:00:00Z.")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="A Group id (protocol-...): only its patients' data.")
    ] = None,
) -> None:
    """FHIR Bulk Data export in the foreground: one NDJSON file per type and a manifest."""
    import datetime as dt

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ketacare.interop.fhir import bulk

    settings = settings_or_fail()
    engine = _migrated_engine()
    factory = make_sessionmaker(engine)
    # An empty --type (",,") names no type: plan_command_export refuses it, as the kick-off does.
    types = [t.strip() for t in type_.split(",") if t.strip()] if type_ is not None else None
    with transaction(factory) as db:
        try:
            clinic_id = bulk.command_clinic(db, clinic)
            plan = bulk.plan_command_export(db, clinic_id, types, since, group)
        except KetaCareError as exc:
            fail(_describe(exc))
    started = dt.datetime.now(dt.UTC)
    reader_engine = bulk.snapshot_engine(engine)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:>9,} resources"),
    )
    try:
        with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
            tasks: dict[str, Any] = {}

            def show(resource_type: str, count: int) -> None:
                if resource_type not in tasks:
                    tasks[resource_type] = progress.add_task(resource_type, total=None)
                progress.update(tasks[resource_type], completed=count)

            reader = make_sessionmaker(reader_engine)()
            try:
                result = bulk.write_ndjson(
                    reader,
                    clinic_id,
                    plan.types,
                    out,
                    since=plan.since,
                    patient_ids=plan.patient_ids,
                    max_lines=settings.fhir_export_file_max_lines,
                    progress=show,
                )
            finally:
                reader.rollback()
                reader.close()
            for task in tasks.values():
                progress.update(task, total=progress.tasks[task].completed or 1)
    except OSError as exc:
        fail(f"Cannot write to {out}: {exc.strerror or exc}")
    finally:
        if reader_engine is not engine and engine.dialect.name == "sqlite":
            reader_engine.dispose()
    request = "ketacare fhir export" + "".join(
        f" --{name} {value}"
        for name, value in (("clinic", clinic), ("type", type_), ("since", since), ("group", group))
        if value
    )
    bulk.write_manifest(out, started, request, result)
    with transaction(factory) as db:
        bulk.record_command_export(db, clinic_id, out, plan, result)
    table = Table("Type", "Resources", "Files")
    for name in plan.types:
        files = [f.file_name for f in result.files if f.resource_type == name]
        table.add_row(name, f"{result.counts.get(name, 0):,}", ", ".join(files) or "-")
    console.print(table)
    total = sum(result.counts.values())
    console.print(
        f"Exported {total:,} resources of {len(result.patient_ids):,} patients to {out} (manifest.json)."
    )


# --- fhir import (the import's commands go here) ------------------------------------------


@fhir_app.command("import")
def fhir_import(
    files: Annotated[list[Path], typer.Argument(help="NDJSON files (one FHIR resource per line).")],
    clinic: Annotated[str, typer.Option(help="Slug of the clinic the records go into.")],
    source: Annotated[
        str,
        typer.Option(help="Name of the system the files come from (required: ids are only unique there)."),
    ],
    report: Annotated[Path | None, typer.Option(help="Write the full per-line report here (JSON).")] = None,
) -> None:
    """Import Patient, Condition, Observation and MedicationStatement lines into a clinic.

    Patients are read first (two passes). Every line is checked on its own; a rejected line
    writes nothing. Importing the same files again changes nothing. Exit code 0 when every line
    was accepted or unchanged, 1 when some lines were rejected, 2 for bad arguments (no such
    file, unknown clinic, no source system).
    """
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ketacare.auth.principal import Principal
    from ketacare.interop.fhir import importer

    try:
        source = importer.check_source(source)
    except KetaCareError as exc:
        fail(f"--source: {_describe(exc).removeprefix('source: ')}")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}")
    factory = make_sessionmaker(_migrated_engine())
    with transaction(factory) as db:
        try:
            found = auth.clinic_by_slug(db, clinic)
        except KetaCareError as exc:
            fail(_describe(exc))
        actor_clinic = found.id
    actor = Principal(None, "command:fhir import", Role.clinic_admin, actor_clinic)
    lines = 0
    for path in files:
        with path.open("rb") as handle:
            lines += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with contextlib.ExitStack() as stack:
        streams = [importer.NdjsonFile(str(p), stack.enter_context(p.open("rb"))) for p in files]
        with Progress(*columns, console=console) as progress, transaction(factory) as db:
            task = progress.add_task("Importing (patients, then the rest)", total=2 * max(lines, 1))
            try:
                result = importer.Importer(
                    db,
                    actor,
                    source_system=source,
                    commit_every=500,
                    progress=lambda n: progress.advance(task, n),
                ).run(streams)
            except KetaCareError as exc:
                fail(_describe(exc))
            progress.update(task, completed=2 * max(lines, 1))
    console.print(f"FHIR import into {clinic}: {result.summary()}.", highlight=False)
    for line in result.rejected[:10]:
        err.print(f"  {line.file}:{line.line} {line.resource_type or '-'}: {line.reason}", highlight=False)
    if len(result.rejected) > 10:
        err.print(f"  ... and {len(result.rejected) - 10} more rejected lines", highlight=False)
    if report is not None:
        try:
            report.write_text(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
        except OSError as exc:
            fail(f"cannot write the report to {report}: {exc.strerror or exc}")
        console.print(f"Report written to {report}.", highlight=False)
    if result.rejected:
        raise typer.Exit(1)
