"""What the public directory may say about a clinic: counts only, never a patient."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketacare.sessions import rules
from ketacare.sessions.models import AdverseEvent, TreatmentSession


@dataclass(frozen=True)
class ClinicSafetyRecord:
    """Counts only, never a patient: the directory's vetting signals read them."""

    sessions_delivered: int  # discharged sessions
    adverse_events_recorded: int


def clinic_safety_record(db: Session, clinic_id: int) -> ClinicSafetyRecord:
    delivered = db.execute(
        select(func.count(TreatmentSession.id)).where(
            TreatmentSession.clinic_id == clinic_id, TreatmentSession.status == rules.DISCHARGED
        )
    ).scalar_one()
    events = db.execute(
        select(func.count(AdverseEvent.id)).where(
            AdverseEvent.clinic_id == clinic_id, AdverseEvent.session_id.is_not(None)
        )
    ).scalar_one()
    return ClinicSafetyRecord(int(delivered), int(events))


def had_session(db: Session, clinic_id: int, patient_id: int) -> bool:
    """Whether the patient completed (was discharged from) a session at the clinic."""
    return (
        db.execute(
            select(TreatmentSession.id)
            .where(
                TreatmentSession.clinic_id == clinic_id,
                TreatmentSession.patient_id == patient_id,
                TreatmentSession.status == rules.DISCHARGED,
            )
            .limit(1)
        ).first()
        is not None
    )
