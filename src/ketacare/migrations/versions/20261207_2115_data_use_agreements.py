"""Data use agreements for limited data sets (research_data_use_agreements)

Revision ID: 0017
Revises: 0010
Create Date: 2026-12-07 21:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ketacare.db

revision: str = "0017"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "research_data_use_agreements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", ketacare.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", ketacare.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_research_data_use_agreements_clinic_id_clinics")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["users.id"],
            name=op.f("fk_research_data_use_agreements_recorded_by_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_research_data_use_agreements")),
    )
    op.create_index("ix_research_dua_clinic", "research_data_use_agreements", ["clinic_id", "ends_on"])


def downgrade() -> None:
    op.drop_index("ix_research_dua_clinic", table_name="research_data_use_agreements")
    op.drop_table("research_data_use_agreements")
