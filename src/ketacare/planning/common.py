"""What every planning use-case shares: the plan states, finding a plan the actor may see, and
the plans of a patient that overlap some dates."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.auth.principal import Principal
from ketacare.errors import NotFound, PendingAudit
from ketacare.patients import service as patients
from ketacare.planning.models import (
    TreatmentPlan,
)

ACTIVE = ("planned", "scheduled")
BOOKED, CANCELLED = "booked", "cancelled"


def _overlapping(
    db: Session, patient_id: int, start: dt.date, end: dt.date, exclude: int | None = None
) -> TreatmentPlan | None:
    return (
        db.execute(
            select(TreatmentPlan).where(
                TreatmentPlan.patient_id == patient_id,
                TreatmentPlan.status.in_(ACTIVE),
                TreatmentPlan.start_date <= end,
                TreatmentPlan.end_date >= start,
                TreatmentPlan.id != (exclude or 0),
            )
        )
        .scalars()
        .first()
    )


def _plan(db: Session, actor: Principal, plan_id: int, action: str) -> TreatmentPlan:
    plan = db.get(TreatmentPlan, plan_id)
    if plan is None or plan.clinic_id != actor.clinic_id:
        why = "no such plan" if plan is None else "plan of another clinic"
        pid = plan.patient_id if plan is not None else None
        raise NotFound(
            "No such plan in your clinic.",
            audit=[PendingAudit(action, "plan", str(plan_id), pid, "denied", why)],
        )
    patients.visible_patient(db, actor, plan.patient_id, action)
    return plan
