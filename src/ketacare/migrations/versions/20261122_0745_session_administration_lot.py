"""session administrations name the ledger lot they came from

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-22 07:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("session_administrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lot_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_session_administrations_lot_id_ledger_lots", "ledger_lots", ["lot_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("session_administrations", schema=None) as batch_op:
        batch_op.drop_constraint("fk_session_administrations_lot_id_ledger_lots", type_="foreignkey")
        batch_op.drop_column("lot_id")
