"""Coded products and allergies: a stocked product's ingredient (ketamine or esketamine; NULL
until an admin codes a product created before this revision, which cannot be drawn for an
administration until then) and an allergy's coded substance beside its free text (NULL: free
text only, matched to the coded list by exact normalised name when read)

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07 20:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_products") as batch_op:
        batch_op.add_column(sa.Column("ingredient", sa.String(length=20), nullable=True))
    with op.batch_alter_table("patient_allergies") as batch_op:
        batch_op.add_column(sa.Column("substance_code", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patient_allergies") as batch_op:
        batch_op.drop_column("substance_code")
    with op.batch_alter_table("ledger_products") as batch_op:
        batch_op.drop_column("ingredient")
