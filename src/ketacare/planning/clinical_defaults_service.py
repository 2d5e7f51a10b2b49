"""Read and save a clinic's clinical defaults (``clinic_clinical_defaults``). Never commits.

Kept apart from planning's use-case modules so that screening can read the values in force
without importing them (``planning.evaluation`` imports screening)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.clinic_settings import Value, number, shown
from ketacare.errors import InvalidInput
from ketacare.planning.clinical_defaults import SPEC_BY_KEY, SPECS, ClinicalDefaults, resolve
from ketacare.planning.models import ClinicClinicalDefaults
from ketacare.planning.schemas import ClinicalDefaultsIn


def _row(db: Session, clinic_id: int) -> ClinicClinicalDefaults | None:
    query = select(ClinicClinicalDefaults).where(ClinicClinicalDefaults.clinic_id == clinic_id)
    return db.execute(query).scalar_one_or_none()


def overrides(db: Session, clinic_id: int) -> dict[str, float | None]:
    """The clinic's own values by key (None = the knowledge default applies)."""
    row = _row(db, clinic_id)
    return {s.key: (getattr(row, s.key) if row is not None else None) for s in SPECS}


def in_force(db: Session, clinic_id: int) -> ClinicalDefaults:
    return resolve(overrides(db, clinic_id))


def _shown(value: Value, knowledge: Value) -> str:
    return shown(value) if value is not None else f"default ({shown(knowledge)})"


def save(db: Session, actor: Principal, data: ClinicalDefaultsIn) -> ClinicalDefaults:
    """Set the fields present in ``data`` (None resets to the knowledge default); one audit entry
    per changed value, old -> new."""
    row = _row(db, actor.clinic_id)
    if row is None:
        row = ClinicClinicalDefaults(clinic_id=actor.clinic_id)
        db.add(row)
    changes: list[str] = []
    for spec in SPECS:
        if spec.key not in data.model_fields_set:
            continue
        value = getattr(data, spec.key)
        new = spec.coerce(value)
        old = getattr(row, spec.key, None)
        if old == new:
            continue
        setattr(row, spec.key, new)
        changes.append(
            f"{spec.key}: {_shown(old, spec.knowledge_value)} -> {_shown(new, spec.knowledge_value)}"
        )
    low = row.adult_weight_min_kg or number(SPEC_BY_KEY["adult_weight_min_kg"].knowledge_value)
    high = row.adult_weight_max_kg or number(SPEC_BY_KEY["adult_weight_max_kg"].knowledge_value)
    if low >= high:
        raise InvalidInput(
            errors={
                "adult_weight_min_kg": f"The lowest adult weight ({low:g} kg) must be below "
                f"the highest ({high:g} kg)."
            }
        )
    row.updated_by_id = actor.user_id
    row.updated_at = dt.datetime.now(dt.UTC)
    db.flush()
    audit.record_many(
        db,
        actor,
        [
            audit.AuditEvent("planning.clinical_default.save", "clinical_defaults", row.id, detail=c)
            for c in changes
        ],
    )
    return in_force(db, actor.clinic_id)
