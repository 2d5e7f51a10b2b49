"""Medication safety, dose part: the clinic's own day-visit dose ceilings and adult weight bounds
(clinic_clinical_defaults), and who overrode a dose entry in a session, and why
(session_administrations)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 20:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEFAULTS = (
    "session_max_mg",
    "session_max_mg_per_kg",
    "day_max_mg",
    "day_max_mg_per_kg",
    "adult_weight_min_kg",
    "adult_weight_max_kg",
)


def upgrade() -> None:
    with op.batch_alter_table("clinic_clinical_defaults", schema=None) as batch_op:
        for name in _DEFAULTS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
    with op.batch_alter_table("session_administrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("override_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("override_by_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_session_administrations_override_by_id_users", "users", ["override_by_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("session_administrations", schema=None) as batch_op:
        batch_op.drop_constraint("fk_session_administrations_override_by_id_users", type_="foreignkey")
        batch_op.drop_column("override_by_id")
        batch_op.drop_column("override_reason")
    with op.batch_alter_table("clinic_clinical_defaults", schema=None) as batch_op:
        for name in reversed(_DEFAULTS):
            batch_op.drop_column(name)
