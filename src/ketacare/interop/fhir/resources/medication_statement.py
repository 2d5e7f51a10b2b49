"""MedicationStatement: the patient's own medications (``patient_medications``).

The NDJSON import writes MedicationStatements into the same table, so every field below reads
back to the same column (export then import means the same thing):

=====================================  =====================================================
FHIR                                   ``patient_medications``
=====================================  =====================================================
``id``                                 ``id`` (logical id)
``subject`` (Patient/<id>)             ``patient_id``
``status``                             always ``active`` (the table lists current medications)
``medicationCodeableConcept.text``     ``name``
``medicationCodeableConcept.coding``   ``drug_class`` as code in ``urn:ketacare:drug-class``
``effectivePeriod.start`` (date)       ``started_on`` (absent when unknown)
``dateAsserted``                       ``recorded_at``
``dosage[0].doseAndRate[0]``           ``dose_amount`` = ``doseQuantity.value``; ``dose_unit`` =
                                       ``doseQuantity.unit`` as written (``system``/``code``
                                       UCUM added where the unit has a UCUM form)
``dosage[0].timing.repeat``            ``doses_per_day`` = ``frequency`` / ``period``
                                       (``periodUnit`` always ``d``)
``dosage[0].route.text``               ``route``
``dosage[0].text``                     derived, for people: "10 mg oral, 3 times a day"
=====================================  =====================================================

No drug code is sent: the list is free text and the facts give no RxNorm codes for these
drugs; the drug class is our own local code.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    KETACARE_SYSTEM,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    changed_since,
    coding,
    date,
    instant,
    latest,
    meta,
    narrowed,
    prune,
    reference,
    table,
)
from ketacare.interop.fhir.resources.medication_request import (
    quantity,
)

DRUG_CLASS_SYSTEM = f"{KETACARE_SYSTEM}:drug-class"


def frequency(doses_per_day: float) -> tuple[int, int]:
    """Doses per day as ``frequency`` per ``period`` days, both whole (1.5 a day = 3 per 2 days)."""
    ratio = Fraction(doses_per_day).limit_denominator(24)
    return ratio.numerator, ratio.denominator


def dosage_text(row: Any) -> str:
    parts = []
    if row.dose_amount is not None:
        parts.append(f"{row.dose_amount:g} {row.dose_unit or ''}".strip())
    if row.route:
        parts.append(row.route)
    text = " ".join(parts)
    if row.doses_per_day is not None:
        times = "once a day" if row.doses_per_day == 1 else f"{row.doses_per_day:g} times a day"
        text = f"{text}, {times}" if text else times
    return text


def to_fhir(row: Any) -> Resource:
    timing = None
    if row.doses_per_day is not None:
        per, days = frequency(row.doses_per_day)
        timing = {"repeat": {"frequency": per, "period": days, "periodUnit": "d"}}
    dose = quantity(row.dose_amount, row.dose_unit)
    return prune(
        {
            "resourceType": "MedicationStatement",
            "id": str(row.id),
            "meta": meta(row.recorded_at),
            "status": "active",
            "medicationCodeableConcept": {
                "coding": [coding(DRUG_CLASS_SYSTEM, row.drug_class, row.drug_class.replace("_", " "))],
                "text": row.name,
            },
            "subject": reference("Patient", row.patient_id),
            "effectivePeriod": {"start": date(row.started_on)},
            "dateAsserted": instant(row.recorded_at),
            "dosage": [
                {
                    "text": dosage_text(row),
                    "timing": timing,
                    "route": {"text": row.route} if row.route else None,
                    "doseAndRate": [{"doseQuantity": dose}] if dose else [],
                }
            ],
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    meds, patients = table("patient_medications"), table("patients")
    query = (
        select(meds)
        .join(patients, patients.c.id == meds.c.patient_id)
        .where(patients.c.clinic_id == scope.clinic_id)
        .order_by(meds.c.id)
    )
    query = narrowed(query, scope, meds.c.patient_id, meds.c.id)
    for row in db.execute(query):
        if changed_since(scope, latest(row.recorded_at)):
            yield to_fhir(row)


MAPPER = Mapper(
    resource_type="MedicationStatement",
    read=read,
    search_params=(
        SearchParam("status", "token", ("status",)),
        SearchParam("code", "token", ("medicationCodeableConcept",)),
        SearchParam("effective", "date", ("effectivePeriod",)),
    ),
    patient_paths=("subject",),
    documentation=(
        "The patient's own medications (opioids, benzodiazepines ...): name as text, drug class as a "
        "local code (urn:ketacare:drug-class), dose, unit, doses per day and route. The same fields "
        "are read back by the NDJSON import."
    ),
)
