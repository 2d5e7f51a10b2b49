"""FHIR Bulk Data export (Flat FHIR): kick-off, the background job, status, files, deletion.

A kick-off checks everything it can up front (format, types the requester may read, ``_since``,
the group) and queues a job; nothing else happens in the request. A worker claims a queued job
with a conditional UPDATE (so two workers never run one job), heartbeats from a small thread
while it works (a slow query does not make a live job look dead), and re-queues jobs whose
worker stopped heartbeating (a crash or a restart). Each attempt writes into its own directory,
``<export dir>/<job id>/<attempt>/``, and the job records the attempt that finished it: a worker
that lost its job removes only its own attempt's files, never its successor's. Files are written
under a temporary name and renamed when complete, so a listed file is always whole. The reads
run in one snapshot (a deferred read transaction on SQLite, REPEATABLE READ on PostgreSQL), so
the files agree with each other and with the job's ``transactionTime``; SQLite writers are not
blocked while a long export reads.

The same writer, ``write_ndjson``, serves the ``ketacare fhir export`` command.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, or_, select, update
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.config import Settings
from ketacare.db import make_sessionmaker, transaction, utcnow
from ketacare.errors import Forbidden, KetaCareError, NotFound, PendingAudit
from ketacare.interop.fhir import service
from ketacare.interop.fhir.models import FhirExportFile, FhirExportJob
from ketacare.interop.fhir.resources import group, mappers
from ketacare.interop.fhir.resources.base import Scope, table

log = logging.getLogger("ketacare.fhir.export")

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
LEVELS = ("system", "patient", "group")
ACTIVE = ("queued", "running")
MAX_ATTEMPTS = 3
AUDIT_BATCH = 1000
PROGRESS_EVERY = 500  # resources between progress calls (the heartbeat runs on its own timer)
# A FHIR instant: date, time to the second (fraction optional) and a zone (Z or +hh:mm).
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
FILE_NAME = re.compile(r"^[A-Z][A-Za-z]{1,40}(\.\d{1,6})?\.ndjson$")


class ExportRefused(KetaCareError):
    """400: the kick-off asks for something this server does not do; no job is made."""

    status_code = 400
    title = "The export request cannot be accepted"
    slug = "export-refused"


class JobLost(Exception):
    """The job is no longer this worker's: cancelled, or taken over after a missed heartbeat."""


class WorkerStopping(Exception):
    """The worker is shutting down; the job goes back to the queue."""


# --- kick-off --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportParams:
    level: str  # system, patient or group
    group_id: str | None = None
    types: Sequence[str] | None = None  # None: every type the level and the requester allow
    since: str | None = None  # a FHIR instant, as sent
    output_format: str | None = None
    request_url: str = ""


def parse_since(text: str) -> dt.datetime:
    """``_since``: a FHIR instant with its zone; anything else is refused (nothing is guessed)."""
    value = text.strip()
    if not _INSTANT.match(value):
        raise ExportRefused(
            f"_since {text!r} is not a FHIR instant; give a time with its zone, "
            "e.g. 2026-01-01T00:00:00Z or 2026-01-01T08:00:00-05:00."
        )
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError as exc:
        raise ExportRefused(f"_since {text!r} is not a real date and time.") from exc
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-01:00 is past the year 9999 in UTC
        raise ExportRefused(f"_since {text!r} is outside the years 1 to 9999 in UTC.") from exc


def level_types(level: str) -> list[str]:
    """The types a level can export: everything (system), or the patient compartment."""
    if level == "system":
        return list(mappers())
    return [name for name, m in mappers().items() if m.patient_data]


def export_types(
    actor: Principal | None, level: str, requested: Sequence[str] | None, *, param: str = "_type"
) -> list[str]:
    """The types to write: the requested ones (each known, of the level, readable by the
    requester) or, when ``requested`` is None, every type of the level the requester may read.
    An empty list (``_type=,,``) names no type and is refused. ``actor`` None is the command
    line, which reads every type; ``param`` is how the messages name the argument."""
    possible = level_types(level)
    if requested is None:
        chosen = [t for t in possible if actor is None or service.may_read(actor, mappers()[t])]
        if not chosen:
            raise Forbidden("This token or role may read none of the resource types of this export.")
        return chosen
    if not requested:
        raise ExportRefused(
            f"{param} names no resource type; name at least one (e.g. Patient,Observation) "
            f"or leave {param} out for every type."
        )
    unknown = [t for t in requested if t not in mappers()]
    if unknown:
        raise ExportRefused(
            f"{param} names {', '.join(unknown)}, which this server does not serve; "
            f"it serves {', '.join(mappers())}."
        )
    outside = [t for t in requested if t not in possible]
    if outside:
        raise ExportRefused(
            f"{param} {', '.join(outside)} is not patient data; a {level}-level export holds "
            f"{', '.join(possible)}."
        )
    if actor is not None:
        for name in requested:
            service.check_type(actor, name)
    return list(dict.fromkeys(requested))


def kick_off(db: Session, actor: Principal, params: ExportParams) -> FhirExportJob:
    if params.level not in LEVELS:
        raise ExportRefused(f"Unknown export level {params.level!r}.")
    output_format = params.output_format or NDJSON
    if output_format not in OUTPUT_FORMATS:
        raise ExportRefused(
            f"_outputFormat {output_format!r} is not offered; use application/fhir+ndjson "
            "(or application/ndjson, ndjson)."
        )
    since = parse_since(params.since) if params.since is not None else None
    types = export_types(actor, params.level, params.types)
    if params.level == "group":
        service.check_type(actor, "Group")
        if params.group_id is None or group.member_ids(db, actor.clinic_id, params.group_id) is None:
            raise NotFound(f"Group/{params.group_id} is not in this clinic's record; see /fhir/R4/Group.")
    job = FhirExportJob(
        id=secrets.token_urlsafe(24),
        clinic_id=actor.clinic_id,
        requester_kind="token" if actor.via_token else "user",
        requested_by_id=None if actor.via_token else actor.user_id,
        api_token_id=actor.api_token_id,
        requester_name=actor.username[:120],
        level=params.level,
        group_id=params.group_id,
        types=types,
        since=since,
        output_format=output_format,
        request_url=params.request_url,
        status="queued",
        transaction_time=utcnow(),
        progress="queued",
        counts={},
        attempts=0,
    )
    db.add(job)
    db.flush()
    audit.record(
        db,
        actor,
        "fhir.export.kickoff",
        "fhir.export",
        resource_id=job.id,
        detail=f"{params.level}{' ' + params.group_id if params.group_id else ''}: {','.join(types)}"
        + (f" since {since.isoformat()}" if since else ""),
    )
    return job


# --- status, files, deletion: only for whoever started the job --------------------------------


def is_requester(job: FhirExportJob, actor: Principal) -> bool:
    if job.clinic_id != actor.clinic_id:
        return False
    if actor.via_token:
        return job.requester_kind == "token" and job.api_token_id == actor.api_token_id
    return job.requester_kind == "user" and job.requested_by_id == actor.user_id


def job_of(db: Session, actor: Principal, job_id: str) -> FhirExportJob:
    """The requester's own job; anyone else's, a deleted or an expired one is not found."""
    job = db.get(FhirExportJob, job_id) if len(job_id) <= 64 else None
    if job is None or not is_requester(job, actor) or job.status in ("cancelled", "expired"):
        raise NotFound(
            "No export job at this address for you (it may have been deleted or expired).",
            audit=[PendingAudit("access.denied", "fhir.export", job_id[:64], detail="not the requester")]
            if job is not None and job.status not in ("cancelled", "expired")
            else [],
        )
    return job


def files_of(db: Session, job_id: str) -> list[FhirExportFile]:
    query = select(FhirExportFile).where(FhirExportFile.job_id == job_id).order_by(FhirExportFile.id)
    return list(db.execute(query).scalars())


def manifest(job: FhirExportJob, files: Sequence[FhirExportFile], base_url: str) -> dict[str, Any]:
    return {
        "transactionTime": job.transaction_time.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": f.resource_type, "url": f"{base_url}/bulk/{job.id}/{f.file_name}", "count": f.count}
            for f in files
        ],
        "error": [],
    }


def attempt_dir(export_dir: Path, job_id: str, attempt: int) -> Path:
    """Where attempt ``attempt`` of a job writes its files."""
    return export_dir / job_id / str(attempt)


def file_path(db: Session, actor: Principal, job_id: str, file_name: str, export_dir: Path) -> Path:
    """The file to send; audited. Only a done job's listed files, and only to the requester.
    The entry names the job (its ``resource_id``, as on the per-patient ``fhir.export``
    entries written when the job finished) and the file, so an auditor can join the two."""
    job = job_of(db, actor, job_id)
    done = job.status == "done" and job.output_attempt is not None
    listed = {f.file_name: f for f in files_of(db, job.id)} if done else {}
    found = listed.get(file_name) if FILE_NAME.match(file_name) else None
    if found is None or job.output_attempt is None:
        raise NotFound(f"The export job has no file {file_name!r}.")
    path = attempt_dir(export_dir, job.id, job.output_attempt) / file_name
    if not path.is_file():
        raise NotFound(f"The export job has no file {file_name!r}.")
    audit.record(
        db,
        actor,
        "fhir.export.download",
        "fhir.export",
        resource_id=job.id,
        detail=f"export job {job.id}, file {file_name}: {found.count} {found.resource_type}",
    )
    return path


def cancel(db: Session, actor: Principal, job_id: str) -> FhirExportJob:
    """Cancels a queued or running job, or discards a finished one; the caller removes the
    directory once this is committed (``remove_files``); a running worker stops at its next
    heartbeat."""
    job = job_of(db, actor, job_id)
    was = job.status
    job.status = "cancelled"
    job.progress = f"deleted by the requester ({was})"
    job.finished_at = job.finished_at or utcnow()
    db.execute(delete(FhirExportFile).where(FhirExportFile.job_id == job.id))
    audit.record(db, actor, "fhir.export.delete", "fhir.export", resource_id=job.id, detail=f"was {was}")
    return job


def remove_files(export_dir: Path, job_id: str, attempt: int | None = None) -> None:
    """Removes a job's directory (every attempt), or only the directory of one attempt."""
    if re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", job_id):
        target = export_dir / job_id if attempt is None else attempt_dir(export_dir, job_id, attempt)
        shutil.rmtree(target, ignore_errors=True)


def clinic_jobs(db: Session, clinic_id: int, limit: int = 50) -> list[FhirExportJob]:
    query = (
        select(FhirExportJob)
        .where(FhirExportJob.clinic_id == clinic_id)
        .order_by(FhirExportJob.created_at.desc())
        .limit(limit)
    )
    return list(db.execute(query).scalars())


def may_download(job: FhirExportJob, actor: Principal) -> bool:
    return is_requester(job, actor) and job.status == "done"


# --- writing NDJSON --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFile:
    resource_type: str
    file_name: str
    count: int


@dataclass
class ExportResult:
    files: list[OutputFile] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    patient_ids: set[int] = field(default_factory=set)  # whose data (or membership) left


Progress = Callable[[str, int], None]


class _TypeWriter:
    """One type's lines, split into files of at most ``max_lines``, each renamed when whole."""

    def __init__(self, out_dir: Path, resource_type: str, max_lines: int) -> None:
        self.out_dir, self.resource_type, self.max_lines = out_dir, resource_type, max_lines
        self.files: list[OutputFile] = []
        self._handle: Any = None
        self._name = ""
        self._lines = 0

    def write(self, line: str) -> None:
        if self._handle is None or self._lines >= self.max_lines:
            self._close_file()
            n = len(self.files) + 1
            self._name = f"{self.resource_type}.ndjson" if n == 1 else f"{self.resource_type}.{n}.ndjson"
            self._handle = open(self.out_dir / (self._name + ".part"), "w", encoding="utf-8")  # noqa: SIM115
            self._lines = 0
        self._handle.write(line)
        self._handle.write("\n")
        self._lines += 1

    def _close_file(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        os.replace(self.out_dir / (self._name + ".part"), self.out_dir / self._name)
        self.files.append(OutputFile(self.resource_type, self._name, self._lines))
        self._handle = None

    def close(self) -> list[OutputFile]:
        self._close_file()
        return self.files

    def abandon(self) -> None:
        if self._handle is not None:
            self._handle.close()
            (self.out_dir / (self._name + ".part")).unlink(missing_ok=True)
            self._handle = None


def write_ndjson(
    db: Session,
    clinic_id: int,
    types: Sequence[str],
    out_dir: Path,
    *,
    since: dt.datetime | None = None,
    patient_ids: Sequence[int] | None = None,
    max_lines: int = 100_000,
    progress: Progress | None = None,
) -> ExportResult:
    """Every resource of ``types`` in the clinic (narrowed to ``patient_ids`` and ``since``), one
    JSON object per line, in ``out_dir/<Type>.ndjson`` (``<Type>.2.ndjson``... past ``max_lines``).
    A type with no resources gets no file. ``progress(type, count)`` is called as lines go out."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ExportResult()
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for name in types:
        mapper = mappers()[name]
        audited = mapper.patient_data or bool(mapper.listed_patient_paths)
        writer = _TypeWriter(out_dir, name, max_lines)
        count = 0
        if progress:
            progress(name, 0)
        try:
            for resource in mapper.read(db, Scope(clinic_id, patient_ids=patient_ids, since=since)):
                writer.write(dumps(resource))
                count += 1
                if audited:
                    result.patient_ids.update(service.patient_ids_of(mapper, resource))
                if progress and count % PROGRESS_EVERY == 0:
                    progress(name, count)
        except BaseException:
            writer.abandon()
            raise
        result.files.extend(writer.close())
        result.counts[name] = count
        if progress:
            progress(name, count)
    return result


# --- the command: the same writer in the foreground --------------------------------------------

COMMAND_USER = "ketacare fhir export"


@dataclass(frozen=True)
class CommandExport:
    types: list[str]
    since: dt.datetime | None
    patient_ids: list[int] | None
    level: str


def command_clinic(db: Session, slug: str | None) -> int:
    """The clinic named by ``--clinic``, or the only one there is."""
    clinics = table("clinics")
    query = select(clinics.c.id, clinics.c.slug).order_by(clinics.c.slug)
    if slug is not None:
        query = query.where(clinics.c.slug == slug)
    found = db.execute(query.limit(2)).all()
    if slug is not None and not found:
        raise NotFound(f"--clinic {slug}: no such clinic (see `ketacare clinic create`).")
    if len(found) != 1:
        raise ExportRefused("There are several clinics (or none): name one with --clinic SLUG.")
    return int(found[0].id)


def plan_command_export(
    db: Session, clinic_id: int, types: Sequence[str] | None, since: str | None, group_id: str | None
) -> CommandExport:
    """What ``ketacare fhir export`` will write; a bad argument raises before anything is.
    The checks are the kick-off's (``export_types``, ``parse_since``), for a reader of every type."""
    level = "group" if group_id else "system"
    chosen = export_types(None, level, types, param="--type")
    parsed_since = parse_since(since) if since is not None else None
    patient_ids = None
    if group_id is not None:
        patient_ids = group.member_ids(db, clinic_id, group_id)
        if patient_ids is None:
            raise NotFound(f"--group {group_id}: no such Group in this clinic (see /fhir/R4/Group).")
    return CommandExport(chosen, parsed_since, patient_ids, level)


def record_command_export(
    db: Session, clinic_id: int, out_dir: Path, plan: CommandExport, result: ExportResult
) -> None:
    """The audit entries of a command-line export: one per patient, one for the export."""
    events = [
        audit.AuditEvent(
            "fhir.export", "fhir.export", resource_id="command", patient_id=pid, detail=plan.level
        )
        for pid in sorted(result.patient_ids)
    ]
    for start in range(0, len(events), AUDIT_BATCH):
        audit.record_many(
            db, None, events[start : start + AUDIT_BATCH], username=COMMAND_USER, clinic_id=clinic_id
        )
    audit.record(
        db,
        None,
        "fhir.export.done",
        "fhir.export",
        resource_id="command",
        detail=json.dumps({"out": str(out_dir), **result.counts, "patients": len(result.patient_ids)})[:2000],
        username=COMMAND_USER,
        clinic_id=clinic_id,
    )


def write_manifest(out_dir: Path, transaction_time: dt.datetime, request: str, result: ExportResult) -> Path:
    body = {
        "transactionTime": transaction_time.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "request": request,
        "requiresAccessToken": False,
        "output": [{"type": f.resource_type, "url": f.file_name, "count": f.count} for f in result.files],
        "error": [],
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


# --- the job ---------------------------------------------------------------------------------


def default_worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{threading.get_ident() % 100000}"


@dataclass(frozen=True)
class RunOptions:
    export_dir: Path
    max_lines: int = 100_000
    stale_after: dt.timedelta = dt.timedelta(seconds=120)
    retention: dt.timedelta = dt.timedelta(hours=24)
    heartbeat_seconds: float = 2.0
    worker_name: str = field(default_factory=default_worker_name)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RunOptions:
        values: dict[str, Any] = {
            "export_dir": settings.resolved_fhir_export_dir,
            "max_lines": settings.fhir_export_file_max_lines,
            "stale_after": dt.timedelta(seconds=settings.fhir_export_stale_after_seconds),
            "retention": dt.timedelta(hours=settings.fhir_export_retention_hours),
            "heartbeat_seconds": min(5.0, settings.fhir_export_stale_after_seconds / 4),
        }
        values.update(overrides)
        return cls(**values)


def snapshot_engine(engine: Engine) -> Engine:
    """An engine for the export's reads: one consistent snapshot per transaction that blocks no
    writer. SQLite: its own connections with a deferred ``BEGIN`` (the app's engine begins
    IMMEDIATE, taking the write lock); PostgreSQL: REPEATABLE READ, read only."""
    if engine.dialect.name != "sqlite":
        return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    snap = create_engine(engine.url, connect_args={"check_same_thread": False}, poolclass=NullPool)

    @event.listens_for(snap, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(snap, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return snap


def requeue_stale(factory: sessionmaker[Session], stale_after: dt.timedelta) -> int:
    """Running jobs whose worker stopped heartbeating go back to the queue (after
    ``MAX_ATTEMPTS`` tries they fail instead). Returns how many were re-queued."""
    now = utcnow()
    stale = (FhirExportJob.status == "running") & or_(
        FhirExportJob.heartbeat_at.is_(None), FhirExportJob.heartbeat_at < now - stale_after
    )
    with transaction(factory) as db:
        db.execute(
            update(FhirExportJob)
            .where(stale, FhirExportJob.attempts >= MAX_ATTEMPTS)
            .values(
                status="failed",
                finished_at=now,
                progress="failed",
                error=f"The export stopped {MAX_ATTEMPTS} times without finishing; start a new one.",
            )
        )
        requeued = db.execute(
            update(FhirExportJob)
            .where(stale)
            .values(status="queued", worker=None, progress="queued again: its worker stopped answering")
        )
    return int(requeued.rowcount)  # type: ignore[attr-defined]


def claim(factory: sessionmaker[Session], worker_name: str) -> str | None:
    """Takes the oldest queued job for this worker; the conditional UPDATE makes it atomic."""
    with transaction(factory) as db:
        candidates = db.execute(
            select(FhirExportJob.id)
            .where(FhirExportJob.status == "queued")
            .order_by(FhirExportJob.created_at)
            .limit(5)
        ).scalars()
        for job_id in list(candidates):
            now = utcnow()
            taken = db.execute(
                update(FhirExportJob)
                .where(FhirExportJob.id == job_id, FhirExportJob.status == "queued")
                .values(
                    status="running",
                    worker=worker_name,
                    started_at=now,
                    heartbeat_at=now,
                    attempts=FhirExportJob.attempts + 1,
                    progress="starting",
                )
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return str(job_id)
    return None


def _held(job_id: str, worker: str, attempt: int) -> Any:
    """The job is still running as this worker's attempt ``attempt`` (not cancelled, not re-queued
    and taken over): the condition of every write a worker makes to its job."""
    return (
        (FhirExportJob.id == job_id)
        & (FhirExportJob.status == "running")
        & (FhirExportJob.worker == worker)
        & (FhirExportJob.attempts == attempt)
    )


class _Heartbeat:
    """Keeps a running job's heartbeat fresh from a small thread, one beat every ``every``
    seconds whatever the export is doing (a slow query included), with the progress text. A beat
    that finds the job is no longer this attempt's (cancelled, or re-queued and taken over) sets
    ``lost``; the export's next progress call then raises ``JobLost``. Progress calls also raise
    ``WorkerStopping`` once the worker is stopping. Use as a context manager."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        worker: str,
        attempt: int,
        every: float,
        stop: threading.Event | None,
    ) -> None:
        self.factory, self.job_id, self.worker, self.attempt = factory, job_id, worker, attempt
        self.every, self.stop = every, stop
        self.done: dict[str, int] = {}
        self.lost = threading.Event()
        self._quit = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"fhir-export-heartbeat-{job_id[:8]}", daemon=True
        )

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._quit.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._quit.wait(self.every):
            try:
                if not self.beat():
                    self.lost.set()
                    return
            except Exception:  # the database busy or away: the next tick tries again
                log.warning("FHIR export %s: heartbeat failed; trying again", self.job_id, exc_info=True)

    def beat(self) -> bool:
        """One heartbeat; False when the job is no longer this attempt's."""
        text = ", ".join(f"{t} {n}" for t, n in dict(self.done).items())
        with transaction(self.factory) as db:
            alive = db.execute(
                update(FhirExportJob)
                .where(_held(self.job_id, self.worker, self.attempt))
                .values(heartbeat_at=utcnow(), progress=f"writing: {text}"[:200])
            )
        return bool(alive.rowcount == 1)  # type: ignore[attr-defined]

    def __call__(self, resource_type: str, count: int) -> None:
        if self.stop is not None and self.stop.is_set():
            raise WorkerStopping
        if self.lost.is_set():
            raise JobLost
        self.done[resource_type] = count


def _requester(db: Session, job: FhirExportJob) -> Principal:
    """Who the audit entries name: the token, or the person with their role."""
    if job.requester_kind == "token":
        return Principal(None, job.requester_name, None, job.clinic_id, api_token_id=job.api_token_id)
    users = table("users")
    role = db.execute(select(users.c.role).where(users.c.id == job.requested_by_id)).scalar_one_or_none()
    return Principal(job.requested_by_id, job.requester_name, Role(role) if role else None, job.clinic_id)


def _job_patients(db: Session, job: FhirExportJob) -> list[int] | None:
    if job.level != "group" or job.group_id is None:
        return None
    members = group.member_ids(db, job.clinic_id, job.group_id)
    if members is None:
        raise RuntimeError(f"Group/{job.group_id} no longer exists in this clinic.")
    return members


def _finish(
    factory: sessionmaker[Session], job_id: str, worker: str, attempt: int, result: ExportResult
) -> None:
    """Marks the job done with this attempt's files; raises ``JobLost`` if it is no longer ours.
    The per-patient ``fhir.export`` entries are written here: the data has left the database
    into files only the requester can fetch (each download is audited again, naming the job)."""
    with transaction(factory) as db:
        finished = db.execute(
            update(FhirExportJob)
            .where(_held(job_id, worker, attempt))
            .values(
                status="done",
                output_attempt=attempt,
                finished_at=utcnow(),
                heartbeat_at=utcnow(),
                counts=result.counts,
                progress=f"done: {sum(result.counts.values())} resources",
                error=None,
            )
        )
        if finished.rowcount != 1:  # type: ignore[attr-defined]
            raise JobLost
        job = db.get(FhirExportJob, job_id)
        assert job is not None
        db.add_all(
            FhirExportFile(job_id=job_id, resource_type=f.resource_type, file_name=f.file_name, count=f.count)
            for f in result.files
        )
        actor = _requester(db, job)
        events = [
            audit.AuditEvent(
                "fhir.export",
                "fhir.export",
                resource_id=job_id,
                patient_id=pid,
                detail=f"{job.level} export job {job_id}",
            )
            for pid in sorted(result.patient_ids)
        ]
        for start in range(0, len(events), AUDIT_BATCH):
            audit.record_many(db, actor, events[start : start + AUDIT_BATCH])
        audit.record(
            db,
            actor,
            "fhir.export.done",
            "fhir.export",
            resource_id=job_id,
            detail=json.dumps({**result.counts, "patients": len(result.patient_ids)})[:2000],
        )


def _fail(factory: sessionmaker[Session], job_id: str, worker: str, attempt: int, message: str) -> bool:
    """Marks the job failed; False (nothing changed) when it is no longer this attempt's."""
    with transaction(factory) as db:
        failed = db.execute(
            update(FhirExportJob)
            .where(_held(job_id, worker, attempt))
            .values(status="failed", finished_at=utcnow(), progress="failed", error=message[:2000])
        )
        job = db.get(FhirExportJob, job_id)
        if failed.rowcount != 1 or job is None:  # type: ignore[attr-defined]
            return False
        audit.record(
            db,
            _requester(db, job),
            "fhir.export.failed",
            "fhir.export",
            resource_id=job_id,
            outcome="failure",
            detail=message[:500],
        )
    return True


def _requeue(factory: sessionmaker[Session], job_id: str, worker: str, attempt: int) -> None:
    with transaction(factory) as db:
        db.execute(
            update(FhirExportJob)
            .where(_held(job_id, worker, attempt))
            .values(status="queued", worker=None, progress="queued again: the worker stopped")
        )


def _discard(factory: sessionmaker[Session], export_dir: Path, job_id: str, attempt: int) -> None:
    """A worker that lost its job removes its own attempt's directory, never another's; the
    whole job directory too when the job was deleted or expired (no attempt will write again)."""
    remove_files(export_dir, job_id, attempt)
    with transaction(factory) as db:
        status = db.execute(select(FhirExportJob.status).where(FhirExportJob.id == job_id)).scalar()
    if status in (None, "cancelled", "expired"):
        remove_files(export_dir, job_id)


def _remove_earlier_attempts(export_dir: Path, job_id: str, attempt: int) -> None:
    """Once an attempt finished the job, what earlier (dead or lost) attempts left goes."""
    root = export_dir / job_id
    for path in root.iterdir() if root.is_dir() else ():
        if path.is_dir() and path.name != str(attempt):
            shutil.rmtree(path, ignore_errors=True)


def run_job(
    factory: sessionmaker[Session],
    reader: sessionmaker[Session],
    job_id: str,
    options: RunOptions,
    stop: threading.Event | None = None,
) -> str:
    """Runs one claimed job to its end; returns the status it ended in ("lost" when the job
    stopped being this worker's: deleted, or re-queued and taken over by another worker)."""
    with transaction(factory) as db:
        job = db.get(FhirExportJob, job_id)
        assert job is not None
        db.expunge(job)
    if job.status != "running" or job.worker != options.worker_name:
        return "lost"  # deleted, or taken over, between the claim and now
    attempt = job.attempts
    out_dir = attempt_dir(options.export_dir, job_id, attempt)
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        with (
            _Heartbeat(
                factory, job_id, options.worker_name, attempt, options.heartbeat_seconds, stop
            ) as beat,
            _reading(reader) as db,
        ):
            result = write_ndjson(
                db,
                job.clinic_id,
                job.types,
                out_dir,
                since=job.since,
                patient_ids=_job_patients(db, job),
                max_lines=options.max_lines,
                progress=beat,
            )
        _finish(factory, job_id, options.worker_name, attempt, result)
    except JobLost:
        _discard(factory, options.export_dir, job_id, attempt)
        return "lost"
    except WorkerStopping:
        remove_files(options.export_dir, job_id, attempt)
        _requeue(factory, job_id, options.worker_name, attempt)
        return "queued"
    except Exception as exc:
        remove_files(options.export_dir, job_id, attempt)
        message = f"The export failed: {type(exc).__name__}: {exc}"
        if not _fail(factory, job_id, options.worker_name, attempt, message):
            # Not ours any more (its directory may have gone with it): nothing to report.
            _discard(factory, options.export_dir, job_id, attempt)
            return "lost"
        log.exception("FHIR export %s failed", job_id)
        return "failed"
    _remove_earlier_attempts(options.export_dir, job_id, attempt)
    return "done"


@contextmanager
def _reading(reader: sessionmaker[Session]) -> Iterator[Session]:
    db = reader()
    try:
        yield db
    finally:
        db.rollback()
        db.close()


def expire_finished(factory: sessionmaker[Session], options: RunOptions) -> int:
    """Finished jobs older than the retention time lose their files; deleted jobs' directories
    are swept too (in case the request that deleted one could not remove them)."""
    cutoff = utcnow() - options.retention
    with transaction(factory) as db:
        old = list(
            db.execute(
                select(FhirExportJob.id).where(
                    FhirExportJob.status.in_(("done", "failed")), FhirExportJob.finished_at < cutoff
                )
            ).scalars()
        )
        if old:
            db.execute(delete(FhirExportFile).where(FhirExportFile.job_id.in_(old)))
            db.execute(
                update(FhirExportJob)
                .where(FhirExportJob.id.in_(old))
                .values(status="expired", progress="expired: files deleted after the retention time")
            )
    gone = set(old)
    if options.export_dir.is_dir():
        names = [p.name for p in options.export_dir.iterdir() if p.is_dir()]
        if names:
            with transaction(factory) as db:
                gone.update(
                    db.execute(
                        select(FhirExportJob.id).where(
                            FhirExportJob.id.in_(names), FhirExportJob.status.in_(("cancelled", "expired"))
                        )
                    ).scalars()
                )
    for job_id in gone:
        remove_files(options.export_dir, job_id)
    return len(old)


def run_pending(
    factory: sessionmaker[Session],
    options: RunOptions,
    *,
    reader: sessionmaker[Session] | None = None,
    stop: threading.Event | None = None,
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """One pass of the worker: re-queue stale jobs, expire old files, then claim and run queued
    jobs until none is left (or ``limit``). Returns (job id, end status) for each job run."""
    requeue_stale(factory, options.stale_after)
    expire_finished(factory, options)
    ran: list[tuple[str, str]] = []
    while (limit is None or len(ran) < limit) and not (stop is not None and stop.is_set()):
        job_id = claim(factory, options.worker_name)
        if job_id is None:
            break
        ran.append((job_id, run_job(factory, reader or factory, job_id, options, stop)))
    return ran


class Worker:
    """The background thread the app starts: a pass of ``run_pending`` every ``poll_seconds``."""

    def __init__(self, engine: Engine, options: RunOptions, poll_seconds: float = 2.0) -> None:
        self.options = options
        self.poll_seconds = poll_seconds
        self.factory = make_sessionmaker(engine)
        self._reader_engine = snapshot_engine(engine)
        self.reader = make_sessionmaker(self._reader_engine)
        self._owns_reader = self._reader_engine is not engine and engine.dialect.name == "sqlite"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fhir-export-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._owns_reader:
            self._reader_engine.dispose()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                run_pending(self.factory, self.options, reader=self.reader, stop=self._stop)
            except Exception:
                log.exception("FHIR export worker pass failed; trying again")
            self._stop.wait(self.poll_seconds)


def start_worker(settings: Settings, engine: Engine) -> Worker | None:
    """The app's hook: a running worker when the settings ask for one, else ``None``."""
    if not settings.runs_fhir_export_worker:
        return None
    worker = Worker(engine, RunOptions.from_settings(settings))
    worker.start()
    return worker
