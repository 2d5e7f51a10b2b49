"""FHIR Bulk Data export: the export jobs (status, heartbeat, counts) and the NDJSON files they wrote

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ketacare.db

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fhir_export_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("requester_kind", sa.String(length=10), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("api_token_id", sa.Integer(), nullable=True),
        sa.Column("requester_name", sa.String(length=120), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=True),
        sa.Column("types", sa.JSON(), nullable=False),
        sa.Column("since", ketacare.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("output_format", sa.String(length=40), nullable=False),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("transaction_time", ketacare.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("progress", sa.String(length=200), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=80), nullable=True),
        sa.Column("output_attempt", sa.Integer(), nullable=True),
        sa.Column("created_at", ketacare.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", ketacare.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", ketacare.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", ketacare.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'expired')",
            name=op.f("ck_fhir_export_jobs_status"),
        ),
        sa.CheckConstraint("level IN ('system', 'patient', 'group')", name=op.f("ck_fhir_export_jobs_level")),
        sa.CheckConstraint(
            "requester_kind IN ('user', 'token', 'command')", name=op.f("ck_fhir_export_jobs_requester_kind")
        ),
        sa.ForeignKeyConstraint(
            ["api_token_id"], ["api_tokens.id"], name=op.f("fk_fhir_export_jobs_api_token_id_api_tokens")
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_fhir_export_jobs_clinic_id_clinics")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name=op.f("fk_fhir_export_jobs_requested_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_export_jobs")),
    )
    with op.batch_alter_table("fhir_export_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fhir_export_jobs_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index("ix_fhir_export_jobs_status_created_at", ["status", "created_at"], unique=False)

    op.create_table(
        "fhir_export_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("file_name", sa.String(length=120), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["fhir_export_jobs.id"], name=op.f("fk_fhir_export_files_job_id_fhir_export_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_export_files")),
        sa.UniqueConstraint("job_id", "file_name", name=op.f("uq_fhir_export_files_job_id")),
    )
    with op.batch_alter_table("fhir_export_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fhir_export_files_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fhir_export_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fhir_export_files_job_id"))
    op.drop_table("fhir_export_files")
    with op.batch_alter_table("fhir_export_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_export_jobs_status_created_at")
        batch_op.drop_index(batch_op.f("ix_fhir_export_jobs_clinic_id"))
    op.drop_table("fhir_export_jobs")
