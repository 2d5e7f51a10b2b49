"""Medication safety: a clinic may lower the inpatient and ICU per-day dose ceilings, as it may the
day-visit ones (clinic_clinical_defaults: inpatient_day_max_mg, inpatient_day_max_mg_per_kg,
icu_day_max_mg_per_kg; null = the knowledge default)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("inpatient_day_max_mg", "inpatient_day_max_mg_per_kg", "icu_day_max_mg_per_kg")


def upgrade() -> None:
    with op.batch_alter_table("clinic_clinical_defaults", schema=None) as batch_op:
        for name in _COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clinic_clinical_defaults", schema=None) as batch_op:
        for name in reversed(_COLUMNS):
            batch_op.drop_column(name)
