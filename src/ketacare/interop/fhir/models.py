"""FHIR Bulk Data export jobs and the NDJSON files they wrote.

A job is kicked off by a person (their session) or a system client (an API token), runs on a
background worker (or the ``ketacare fhir export`` command), and is readable only by whoever
started it. Its id is random and unguessable: it is the last part of the status URL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow

JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled", "expired")


class FhirExportJob(Base):
    """One ``$export`` request. ``status``: queued -> running -> done | failed; cancelled (the
    requester deleted it) and expired (its files passed the retention time) keep the row.
    ``attempts`` counts the claims; attempt n writes under ``<id>/<n>/``."""

    __tablename__ = "fhir_export_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'expired')", name="status"
        ),
        CheckConstraint("level IN ('system', 'patient', 'group')", name="level"),
        CheckConstraint("requester_kind IN ('user', 'token', 'command')", name="requester_kind"),
        Index("ix_fhir_export_jobs_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    requester_kind: Mapped[str] = mapped_column(String(10))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    api_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    requester_name: Mapped[str] = mapped_column(String(120))
    level: Mapped[str] = mapped_column(String(10))
    group_id: Mapped[str | None] = mapped_column(String(64))
    types: Mapped[list[str]] = mapped_column(JSON)  # resolved at kick-off: what the requester may read
    since: Mapped[dt.datetime | None] = mapped_column()
    output_format: Mapped[str] = mapped_column(String(40))
    request_url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    transaction_time: Mapped[dt.datetime] = mapped_column()
    progress: Mapped[str | None] = mapped_column(String(200))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(80))  # who holds a running job
    # Each attempt writes into ``<export dir>/<id>/<attempt>/``; the one that finished the job
    # (its files are the listed ones) is recorded here, so a lost attempt touches only its own.
    output_attempt: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class FhirExportFile(Base):
    """One complete NDJSON file of a finished job (``<Type>.ndjson`` or ``<Type>.<n>.ndjson``)."""

    __tablename__ = "fhir_export_files"
    __table_args__ = (UniqueConstraint("job_id", "file_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fhir_export_jobs.id"), index=True)
    resource_type: Mapped[str] = mapped_column(String(40))
    file_name: Mapped[str] = mapped_column(String(120))
    count: Mapped[int] = mapped_column(Integer)


class FhirImportLink(Base):
    """What an NDJSON import wrote for one source resource, so a re-import is idempotent: the same
    line again is "unchanged", a changed Patient updates demographics, anything else changed is
    refused. ``source_system`` names the system the files came from (ids are only unique there);
    ``source_id`` is the resource's ``id``, or the SHA-256 of its canonical JSON when it has none."""

    __tablename__ = "fhir_import_links"
    __table_args__ = (UniqueConstraint("clinic_id", "source_system", "resource_type", "source_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    source_system: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(64))
    local_table: Mapped[str] = mapped_column(String(40))
    local_id: Mapped[int] = mapped_column(Integer)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    imported_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    imported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column()
