"""Patient-record use-cases. Every read and write of a patient's data is audited here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import utcnow
from ketacare.errors import Forbidden, InvalidInput, NotFound, PendingAudit
from ketacare.patients.models import Allergy, Condition, Measurement, Medication, Patient, PatientObservation
from ketacare.patients.schemas import (
    AllergyCreate,
    ConditionCreate,
    ExternalObservationCreate,
    MeasurementCreate,
    MedicationCreate,
    PatientCreate,
    PatientUpdate,
)
from ketacare.safety import holds_service

PER_PAGE_DEFAULT = 25
PER_PAGE_MAX = 100


@dataclass(frozen=True)
class PatientRecord:
    patient: Patient
    measurements: list[Measurement]
    conditions: list[Condition]
    medications: list[Medication]
    allergies: list[Allergy]
    # Recorded by other systems (FHIR import), newest first.
    observations: list[PatientObservation] = field(default_factory=list)
    # Active long-term safety holds: shown in the patient's header (issue 14).
    safety_holds: tuple[holds_service.HoldNotice, ...] = ()

    @property
    def latest_weight(self) -> Measurement | None:
        return next((m for m in self.measurements if m.weight_kg is not None), None)

    @property
    def latest_height(self) -> Measurement | None:
        return next((m for m in self.measurements if m.height_cm is not None), None)


def age_years(date_of_birth: dt.date, on: dt.date) -> int:
    before_birthday = (on.month, on.day) < (date_of_birth.month, date_of_birth.day)
    return on.year - date_of_birth.year - int(before_birthday)


def _denied(action: str, patient_id: int, why: str) -> list[PendingAudit]:
    return [PendingAudit(action, "patient", str(patient_id), patient_id, "denied", why)]


def visible_patient(db: Session, actor: Principal, patient_id: int, action: str) -> Patient:
    """The patient if ``actor`` may see them; another clinic's patient looks like no patient."""
    patient = db.get(Patient, patient_id)
    if patient is None or patient.clinic_id != actor.clinic_id:
        why = "no such patient" if patient is None else "patient of another clinic"
        raise NotFound("No such patient in your clinic.", audit=_denied(action, patient_id, why))
    if actor.role == Role.patient and actor.patient_id != patient_id:
        raise Forbidden(
            "You can only see your own record.", audit=_denied(action, patient_id, "not own record")
        )
    return patient


def parse_search_date(text: str) -> dt.date | None:
    """A date typed the ISO way (1979-03-14) or the US way (03/14/1979), else None."""
    text = text.strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return dt.datetime.strptime(text, "%m/%d/%Y").date()
    except ValueError:
        return None


def _search_query(clinic_id: int, q: str) -> Select[Patient]:
    query = select(Patient).where(Patient.clinic_id == clinic_id)
    q = q.strip()
    if not q:
        return query
    born = parse_search_date(q)
    if born is not None:
        return query.where(Patient.date_of_birth == born)
    terms = q.lower().replace(",", " ").split()
    for term in terms:
        like = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                func.lower(Patient.family_name).like(like, escape="\\"),
                func.lower(Patient.given_name).like(like, escape="\\"),
                func.lower(Patient.record_number) == term,
            )
        )
    return query


def search(
    db: Session, actor: Principal, q: str = "", page: int = 1, per_page: int = PER_PAGE_DEFAULT
) -> tuple[list[Patient], int]:
    """Search by name prefixes (any order), date of birth (YYYY-MM-DD) or record number.

    Every patient shown is audited: a list reveals names and dates of birth.
    """
    page = max(page, 1)
    per_page = min(max(per_page, 1), PER_PAGE_MAX)
    query = _search_query(actor.clinic_id, q)
    total = int(db.execute(select(func.count()).select_from(query.subquery())).scalar_one())
    rows = db.execute(
        query.order_by(Patient.family_name, Patient.given_name, Patient.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    patients = list(rows.scalars())
    detail = f"search {q!r}" if q else ""
    audit.record_many(db, actor, [_listed(p, detail) for p in patients])
    return patients, total


def _listed(patient: Patient, detail: str) -> audit.AuditEvent:
    return audit.AuditEvent("patient.list", "patient", patient.id, patient.id, detail=detail)


def create(db: Session, actor: Principal, data: PatientCreate) -> Patient:
    record_number = data.record_number
    if record_number is not None:
        taken = db.execute(
            select(Patient.id).where(
                Patient.clinic_id == actor.clinic_id, Patient.record_number == record_number
            )
        ).first()
        if taken:
            raise InvalidInput(errors={"record_number": f"{record_number} belongs to another patient."})
    else:
        record_number = auth.allocate_record_number(db, actor.clinic_id)
    fields = data.model_dump(exclude={"record_number"})
    patient = Patient(clinic_id=actor.clinic_id, record_number=record_number, **fields)
    db.add(patient)
    try:
        db.flush()
    except IntegrityError as exc:
        raise InvalidInput(errors={"record_number": f"{record_number} belongs to another patient."}) from exc
    audit.record(
        db,
        actor,
        "patient.create",
        "patient",
        resource_id=patient.id,
        patient_id=patient.id,
        detail=record_number,
    )
    return patient


def update_demographics(db: Session, actor: Principal, patient_id: int, data: PatientUpdate) -> Patient:
    patient = visible_patient(db, actor, patient_id, "patient.update")
    changes = data.model_dump(exclude_unset=True)
    changed = sorted(k for k, v in changes.items() if getattr(patient, k) != v)
    for key in changed:
        setattr(patient, key, changes[key])
    if changed:
        patient.updated_at = utcnow()
    audit.record(
        db,
        actor,
        "patient.update",
        "patient",
        resource_id=patient.id,
        patient_id=patient.id,
        detail="changed: " + (", ".join(changed) or "nothing"),
    )
    return patient


def record(db: Session, actor: Principal, patient_id: int) -> PatientRecord:
    patient = visible_patient(db, actor, patient_id, "patient.read")
    result = PatientRecord(
        patient=patient,
        measurements=list(
            db.execute(
                select(Measurement)
                .where(Measurement.patient_id == patient_id)
                .order_by(Measurement.measured_on.desc(), Measurement.id.desc())
            ).scalars()
        ),
        conditions=list(
            db.execute(
                select(Condition).where(Condition.patient_id == patient_id).order_by(Condition.id)
            ).scalars()
        ),
        medications=list(
            db.execute(
                select(Medication).where(Medication.patient_id == patient_id).order_by(Medication.id)
            ).scalars()
        ),
        allergies=list(
            db.execute(select(Allergy).where(Allergy.patient_id == patient_id).order_by(Allergy.id)).scalars()
        ),
        observations=list(
            db.execute(
                select(PatientObservation)
                .where(PatientObservation.patient_id == patient_id)
                .order_by(PatientObservation.effective_at.desc(), PatientObservation.id.desc())
            ).scalars()
        ),
        safety_holds=holds_service.notices(db, patient.clinic_id, patient.id),
    )
    audit.record(db, actor, "patient.read", "patient", resource_id=patient.id, patient_id=patient.id)
    return result


def add_measurement(db: Session, actor: Principal, patient_id: int, data: MeasurementCreate) -> Measurement:
    visible_patient(db, actor, patient_id, "patient.measurement.add")
    row = Measurement(patient_id=patient_id, recorded_by_id=actor.user_id, **data.model_dump())
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "patient.measurement.add",
        "measurement",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"weight_kg={data.weight_kg} height_cm={data.height_cm} on {data.measured_on}",
    )
    return row


def add_condition(db: Session, actor: Principal, patient_id: int, data: ConditionCreate) -> Condition:
    visible_patient(db, actor, patient_id, "patient.condition.add")
    duplicate = db.execute(
        select(Condition.id).where(
            Condition.patient_id == patient_id, Condition.icd10_code == data.icd10_code
        )
    ).first()
    if duplicate:
        raise InvalidInput(errors={"icd10_code": f"{data.icd10_code} is already on the record."})
    row = Condition(patient_id=patient_id, **data.model_dump())
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "patient.condition.add",
        "condition",
        resource_id=row.id,
        patient_id=patient_id,
        detail=data.icd10_code,
    )
    return row


def add_medication(db: Session, actor: Principal, patient_id: int, data: MedicationCreate) -> Medication:
    visible_patient(db, actor, patient_id, "patient.medication.add")
    row = Medication(patient_id=patient_id, **data.model_dump())
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "patient.medication.add",
        "medication",
        resource_id=row.id,
        patient_id=patient_id,
        detail=data.name,
    )
    return row


def add_allergy(db: Session, actor: Principal, patient_id: int, data: AllergyCreate) -> Allergy:
    visible_patient(db, actor, patient_id, "patient.allergy.add")
    row = Allergy(patient_id=patient_id, **data.model_dump())
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "patient.allergy.add",
        "allergy",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{data.substance} ({data.substance_code or 'not coded'})",
    )
    return row


def add_external_observation(
    db: Session, actor: Principal, patient_id: int, data: ExternalObservationCreate
) -> PatientObservation:
    """Keep an observation another system recorded (a FHIR import) on the record."""
    visible_patient(db, actor, patient_id, "patient.observation.add")
    fields = data.model_dump(exclude={"components"})
    components = [c.model_dump() for c in data.components] if data.components else None
    row = PatientObservation(
        patient_id=patient_id, components=components, recorded_by_id=actor.user_id, **fields
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "patient.observation.add",
        "observation",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{data.code_system}|{data.code} at {data.effective_at.isoformat()} from {data.source}",
    )
    return row


REMOVABLE: dict[str, type[Condition | Medication | Allergy]] = {
    "condition": Condition,
    "medication": Medication,
    "allergy": Allergy,
}


def remove_item(db: Session, actor: Principal, patient_id: int, kind: str, item_id: int) -> None:
    """Remove a condition, medication or allergy entered in error or no longer current."""
    model = REMOVABLE.get(kind)
    if model is None:
        raise NotFound(f"Nothing called {kind!r} on a patient record.")
    visible_patient(db, actor, patient_id, f"patient.{kind}.remove")
    row = db.get(model, item_id)
    if row is None or getattr(row, "patient_id", None) != patient_id:
        raise NotFound(f"No such {kind} on this record.")
    db.delete(row)
    audit.record(db, actor, f"patient.{kind}.remove", kind, resource_id=item_id, patient_id=patient_id)


def count(db: Session, actor: Principal) -> int:
    query = select(func.count()).select_from(Patient).where(Patient.clinic_id == actor.clinic_id)
    return int(db.execute(query).scalar_one())


def recently_added(db: Session, actor: Principal, limit: int = 8) -> list[Patient]:
    query = (
        select(Patient)
        .where(Patient.clinic_id == actor.clinic_id)
        .order_by(Patient.created_at.desc(), Patient.id.desc())
        .limit(limit)
    )
    patients = list(db.execute(query).scalars())
    audit.record_many(db, actor, [_listed(p, "dashboard: recently added") for p in patients])
    return patients


SMALL_CELL = 5  # counts below this are suppressed in de-identified views (design default)


@dataclass(frozen=True)
class ConditionCount:
    icd10_code: str
    display: str
    patients: int | None  # None when suppressed


def condition_counts(db: Session, actor: Principal) -> list[ConditionCount]:
    """De-identified: how many of the clinic's patients carry each diagnosis; small cells hidden."""
    query = (
        select(
            Condition.icd10_code, func.min(Condition.display), func.count(func.distinct(Condition.patient_id))
        )
        .join(Patient, Patient.id == Condition.patient_id)
        .where(Patient.clinic_id == actor.clinic_id)
        .group_by(Condition.icd10_code)
        .order_by(func.count(func.distinct(Condition.patient_id)).desc())
    )
    rows = db.execute(query).all()
    audit.record(db, actor, "research.condition_counts", "cohort", detail="de-identified aggregate")
    return [ConditionCount(code, display, n if n >= SMALL_CELL else None) for code, display, n in rows]


def id_by_record_number(db: Session, actor: Principal, record_number: str) -> int | None:
    """The id behind a record number in the actor's clinic (for filters; reveals no patient data)."""
    query = select(Patient.id).where(
        Patient.clinic_id == actor.clinic_id, Patient.record_number == record_number.strip().upper()
    )
    return db.execute(query).scalar_one_or_none()


def record_numbers(db: Session, actor: Principal, patient_ids: set[int]) -> dict[int, str]:
    """Record numbers for the given ids of the actor's clinic: what auditors see instead of names."""
    if not patient_ids:
        return {}
    query = select(Patient.id, Patient.record_number).where(
        Patient.clinic_id == actor.clinic_id, Patient.id.in_(patient_ids)
    )
    return {pid: number for pid, number in db.execute(query).all()}


def id_in_clinic(db: Session, clinic_id: int, record_number: str) -> int | None:
    """For device feeds, which name a clinic and a record number but act as no user."""
    query = select(Patient.id).where(
        Patient.clinic_id == clinic_id, Patient.record_number == record_number.strip().upper()
    )
    return db.execute(query).scalar_one_or_none()


def demographics(db: Session, patient_id: int) -> tuple[dt.date, str]:
    """Date of birth and sex, for dose and concentration arithmetic of a visible session."""
    row = db.execute(select(Patient.date_of_birth, Patient.sex).where(Patient.id == patient_id)).one()
    return row[0], row[1]
