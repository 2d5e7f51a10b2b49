"""Encounters (in person or by telehealth) and PDMP checks, recorded for a patient: what a
prescription's checks read. Never commits; every change is audited."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.patients import service as patients
from ketacare.prescribing.common import _today
from ketacare.prescribing.models import (
    Encounter,
    PdmpCheck,
)
from ketacare.prescribing.schemas import (
    EncounterIn,
    PdmpIn,
)


def record_encounter(
    db: Session, actor: Principal, patient_id: int, data: EncounterIn, today: dt.date | None = None
) -> Encounter:
    patient = patients.visible_patient(db, actor, patient_id, "prescribing.encounter.add")
    if data.occurred_on > _today(db, actor, today):
        raise InvalidInput(errors={"occurred_on": "An encounter is recorded after it happened."})
    row = Encounter(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        prescriber_id=actor.user_id,
        kind=data.kind.value,
        modality=data.modality.value,
        occurred_on=data.occurred_on,
        patient_state=data.patient_state or patient.state,
        note=data.note,
        recorded_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "prescribing.encounter.add",
        "encounter",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{row.kind} {row.modality} on {row.occurred_on} in {row.patient_state or '?'}",
    )
    return row


def _encounters(db: Session, clinic_id: int, patient_id: int) -> list[Encounter]:
    return list(
        db.execute(
            select(Encounter)
            .where(Encounter.clinic_id == clinic_id, Encounter.patient_id == patient_id)
            .order_by(Encounter.occurred_on.desc(), Encounter.id.desc())
        ).scalars()
    )


def record_pdmp(
    db: Session, actor: Principal, patient_id: int, data: PdmpIn, today: dt.date | None = None
) -> PdmpCheck:
    patients.visible_patient(db, actor, patient_id, "prescribing.pdmp.add")
    if data.checked_on > _today(db, actor, today):
        raise InvalidInput(errors={"checked_on": "A PDMP check is recorded after it was made."})
    row = PdmpCheck(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        checked_on=data.checked_on,
        state=data.state,
        findings=data.findings.value,
        note=data.note,
        checked_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "prescribing.pdmp.add",
        "pdmp_check",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{data.state} on {data.checked_on}: {data.findings.value}",
    )
    return row


def _pdmp_checks(db: Session, clinic_id: int, patient_id: int) -> list[PdmpCheck]:
    return list(
        db.execute(
            select(PdmpCheck)
            .where(PdmpCheck.clinic_id == clinic_id, PdmpCheck.patient_id == patient_id)
            .order_by(PdmpCheck.checked_on.desc(), PdmpCheck.id.desc())
        ).scalars()
    )
