"""FHIR NDJSON import: what each import wrote (fhir_import_links, for idempotent re-imports) and
observations recorded by other systems on the patient record (patient_observations)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ketacare.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fhir_import_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("source_system", sa.String(length=100), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("local_table", sa.String(length=40), nullable=False),
        sa.Column("local_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("imported_by_id", sa.Integer(), nullable=True),
        sa.Column("imported_at", ketacare.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ketacare.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_fhir_import_links_clinic_id_clinics")
        ),
        sa.ForeignKeyConstraint(
            ["imported_by_id"], ["users.id"], name=op.f("fk_fhir_import_links_imported_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_fhir_import_links_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_import_links")),
        sa.UniqueConstraint(
            "clinic_id",
            "source_system",
            "resource_type",
            "source_id",
            name=op.f("uq_fhir_import_links_clinic_id"),
        ),
    )
    with op.batch_alter_table("fhir_import_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fhir_import_links_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "patient_observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("code_system", sa.String(length=100), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("display", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=40), nullable=True),
        sa.Column("components", sa.JSON(), nullable=True),
        sa.Column("effective_at", ketacare.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", ketacare.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_patient_observations_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name=op.f("fk_patient_observations_recorded_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_observations")),
    )
    with op.batch_alter_table("patient_observations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patient_observations_patient_id"), ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("patient_observations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_observations_patient_id"))

    op.drop_table("patient_observations")
    with op.batch_alter_table("fhir_import_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fhir_import_links_patient_id"))

    op.drop_table("fhir_import_links")
