"""Screening use-cases: record the screening, compute eligibility from the record, override.

Eligibility is never stored: it is recomputed from the current record on every read, so a
new medication or condition changes it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.patients import service as patients
from ketacare.planning import clinical_defaults_service
from ketacare.screening.eligibility import (
    Decision,
    MedicationFact,
    ScreeningFacts,
    decide,
    overridable,
)
from ketacare.screening.models import EligibilityOverride, ScreeningAssessment
from ketacare.screening.schemas import OverrideIn, ScreeningIn


@dataclass(frozen=True)
class Eligibility:
    record: patients.PatientRecord
    screening: ScreeningAssessment | None
    overrides: list[EligibilityOverride]
    decision: Decision
    prior_therapies_minimum: int = 0
    prior_therapies_origin: str = ""
    prior_therapies_note: str = ""


def _latest(db: Session, patient_id: int) -> ScreeningAssessment | None:
    return db.execute(
        select(ScreeningAssessment)
        .where(ScreeningAssessment.patient_id == patient_id)
        .order_by(ScreeningAssessment.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _overrides(db: Session, patient_id: int) -> list[EligibilityOverride]:
    return list(
        db.execute(
            select(EligibilityOverride)
            .where(EligibilityOverride.patient_id == patient_id)
            .order_by(EligibilityOverride.id)
        ).scalars()
    )


def facts_for(
    record: patients.PatientRecord,
    screening: ScreeningAssessment | None,
    overrides: list[EligibilityOverride],
    *,
    high_dose_high_frequency: bool = False,
) -> ScreeningFacts:
    return ScreeningFacts(
        condition_codes=tuple(c.icd10_code for c in record.conditions),
        medications=tuple(
            MedicationFact(m.name, m.drug_class, m.dose_amount, m.dose_unit, m.doses_per_day)
            for m in record.medications
        ),
        allergy_substances=tuple(a.substance for a in record.allergies if a.substance_code is None),
        allergy_codes=tuple(a.substance_code for a in record.allergies if a.substance_code is not None),
        screened=screening is not None,
        answers=dict(screening.answers) if screening else {},
        prior_therapies=tuple(screening.prior_therapies) if screening else (),
        sbp_mmhg=screening.sbp_mmhg if screening else None,
        dbp_mmhg=screening.dbp_mmhg if screening else None,
        ecg_on_file=bool(screening and screening.ecg_on),
        lft_on_file=bool(screening and screening.lft_on),
        overrides={o.caution_key: o.reason for o in overrides},
        high_dose_high_frequency=high_dose_high_frequency,
    )


def eligibility(
    db: Session, actor: Principal, patient_id: int, *, high_dose_high_frequency: bool = False
) -> Eligibility:
    record = patients.record(db, actor, patient_id)
    screening = _latest(db, patient_id)
    overrides = _overrides(db, patient_id)
    clinic = clinical_defaults_service.in_force(db, actor.clinic_id)
    note = clinic.note("prior_therapies_minimum")
    decision = decide(
        facts_for(record, screening, overrides, high_dose_high_frequency=high_dose_high_frequency),
        prior_therapies_minimum=clinic.prior_therapies_minimum,
        prior_therapies_note=note,
    )
    audit.record(
        db,
        actor,
        "screening.eligibility.read",
        "patient",
        resource_id=patient_id,
        patient_id=patient_id,
        detail=decision.status,
    )
    return Eligibility(
        record,
        screening,
        overrides,
        decision,
        clinic.prior_therapies_minimum,
        clinic.origin("prior_therapies_minimum"),
        note,
    )


def save_screening(db: Session, actor: Principal, patient_id: int, data: ScreeningIn) -> ScreeningAssessment:
    patients.visible_patient(db, actor, patient_id, "screening.save")
    if data.sbp_mmhg is not None and data.dbp_mmhg is not None and data.dbp_mmhg >= data.sbp_mmhg:
        raise InvalidInput(errors={"dbp_mmhg": "Diastolic must be lower than systolic."})
    if (data.sbp_mmhg is None) != (data.dbp_mmhg is None):
        raise InvalidInput(errors={"sbp_mmhg": "Give both systolic and diastolic pressure."})
    row = ScreeningAssessment(
        patient_id=patient_id, recorded_by_id=actor.user_id, **data.model_dump(mode="python")
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "screening.save",
        "screening",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{sum(v == 'yes' for v in data.answers.values())} yes answers",
    )
    return row


def override(db: Session, actor: Principal, patient_id: int, data: OverrideIn) -> EligibilityOverride:
    current = eligibility(db, actor, patient_id)
    hard = {r.code for r in current.decision.hard_stops}
    if data.caution_key in hard:
        raise InvalidInput(errors={"caution_key": "A hard stop cannot be overridden."})
    if data.caution_key not in overridable(current.decision):
        raise InvalidInput(errors={"caution_key": "There is no open relative caution with that name."})
    row = EligibilityOverride(
        patient_id=patient_id,
        caution_key=data.caution_key,
        reason=data.reason,
        overridden_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "screening.override",
        "eligibility_override",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{data.caution_key}: {data.reason}",
    )
    return row
