"""Follow-ups belong to the series they follow (outcome_follow_ups.plan_id), and the clinic's
baseline look-back (outcome_settings.baseline_lookback_days)

Existing follow-ups after a series are attached to the patient's series that ended last on or
before their series end day (one day of slack: the series end was the clinic's day, sessions
are stored in UTC).

Revision ID: 0018
Revises: 0011
Create Date: 2026-12-07 20:30:00
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outcome_follow_ups") as batch:
        batch.add_column(sa.Column("plan_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_outcome_follow_ups_plan_id_treatment_plans"), "treatment_plans", ["plan_id"], ["id"]
        )
        batch.create_index(op.f("ix_outcome_follow_ups_plan_id"), ["plan_id"], unique=False)
    with op.batch_alter_table("outcome_settings") as batch:
        batch.add_column(sa.Column("baseline_lookback_days", sa.Integer(), nullable=True))
    _attach_existing()


def _day(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _attach_existing() -> None:
    conn = op.get_bind()
    ends: dict[int, list[tuple[dt.date, int]]] = {}
    for patient_id, plan_id, started in conn.execute(
        sa.text(
            "SELECT patient_id, plan_id, started_at FROM treatment_sessions "
            "WHERE status = 'discharged' AND started_at IS NOT NULL AND plan_id IS NOT NULL"
        )
    ):
        ends.setdefault(int(patient_id), []).append((_day(started), int(plan_id)))
    last_day: dict[int, dict[int, dt.date]] = {}
    for patient_id, rows in ends.items():
        per_plan: dict[int, dt.date] = {}
        for day, plan_id in rows:
            per_plan[plan_id] = max(day, per_plan.get(plan_id, day))
        last_day[patient_id] = per_plan
    follow_ups = conn.execute(
        sa.text(
            "SELECT id, patient_id, series_end_on FROM outcome_follow_ups "
            "WHERE series_end_on IS NOT NULL AND plan_id IS NULL"
        )
    ).all()
    for fu_id, patient_id, series_end_on in follow_ups:
        limit = _day(series_end_on) + dt.timedelta(days=1)
        candidates = [
            (end, plan_id) for plan_id, end in last_day.get(int(patient_id), {}).items() if end <= limit
        ]
        if candidates:
            conn.execute(
                sa.text("UPDATE outcome_follow_ups SET plan_id = :plan WHERE id = :id"),
                {"plan": max(candidates)[1], "id": fu_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("outcome_settings") as batch:
        batch.drop_column("baseline_lookback_days")
    with op.batch_alter_table("outcome_follow_ups") as batch:
        batch.drop_index(op.f("ix_outcome_follow_ups_plan_id"))
        batch.drop_constraint(op.f("fk_outcome_follow_ups_plan_id_treatment_plans"), type_="foreignkey")
        batch.drop_column("plan_id")
