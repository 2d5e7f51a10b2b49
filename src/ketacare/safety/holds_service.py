"""Reading safety holds, kept apart from ``safety.service`` so that prescribing can ask whether a
patient is on hold without importing the safety service (which reads prescriptions). Never
commits; the caller audits the read it is part of."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.safety.models import SafetyHold


def active_holds(db: Session, clinic_id: int, patient_id: int) -> list[SafetyHold]:
    return list(
        db.execute(
            select(SafetyHold)
            .where(
                SafetyHold.clinic_id == clinic_id,
                SafetyHold.patient_id == patient_id,
                SafetyHold.released_at.is_(None),
            )
            .order_by(SafetyHold.placed_at, SafetyHold.id)
        ).scalars()
    )


def hold_reasons(db: Session, clinic_id: int, patient_id: int) -> list[str]:
    """One line per active hold, for the prescription check."""
    return [f"{h.kind}: {h.reason}" for h in active_holds(db, clinic_id, patient_id)]
