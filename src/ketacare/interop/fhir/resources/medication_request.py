"""MedicationRequest (US Core MedicationRequest): take-home prescriptions, and each treatment
plan's ketamine regimen as a request of intent ``plan``.

Prescriptions (logical id = the prescription id): ``status`` draft until signed, active once
signed, cancelled when a cancellation row exists (the signed row itself never changes); the
medication is the RxNorm ketamine ingredient (RxCUI 6130, clinical-facts 7.3) with the product
name as text. Our take-home products are compounded, so no product maps to an RxNorm clinical
drug (SCD); esketamine has no verified RxCUI and is sent as text only. ``doseAndRate`` holds the
strength of one unit (a lozenge, a spray, a device) in UCUM mg; the directions text is the
instruction. Creams (strength per gram) carry no ``doseAndRate``.

Plans (logical id ``plan-<plan id>``): the series as a plan: dose or rate in UCUM, session
length, number of sessions and interval as the timing. A plan dosed in a unit with no UCUM
form (``percent``, a topical cream) is not a MedicationRequest: its CarePlan describes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    RXNORM,
    UCUM,
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
    numeric_ids,
    prune,
    reference,
    table,
)
from ketacare.knowledge.drug_codes import codes_for

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-medicationrequest"
CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
PLAN_PREFIX = "plan-"
# Stored dose units -> UCUM codes; anything else has no UCUM form.
UCUM_UNITS = {
    "mg": "mg",
    "mg/kg": "mg/kg",
    "mg/kg/h": "mg/kg/h",
    "mg/h": "mg/h",
    "mg/kg/day": "mg/kg/d",
    "g": "g",
    "mcg": "ug",
    "ug": "ug",
    "mcg/h": "ug/h",
    "ml": "mL",
    "mL": "mL",
}
RATE_UNITS = frozenset({"mg/kg/h", "mg/h", "mcg/h"})


def medication_concept(drug: str, text: str | None = None) -> dict[str, Any]:
    """A drug as a CodeableConcept: the RxNorm ingredient where the facts verify one, else text."""
    codes = codes_for(drug)
    out: dict[str, Any] = {"text": text or drug}
    if codes is not None and codes.rxnorm is not None:
        out["coding"] = [coding(RXNORM, codes.rxnorm.code, codes.rxnorm.display)]
    return out


def quantity(value: float | None, unit: str | None) -> dict[str, Any] | None:
    """A Quantity in UCUM where the unit has a UCUM form; the unit as written otherwise."""
    if value is None:
        return None
    out: dict[str, Any] = {"value": value}
    if unit:
        out["unit"] = unit
        code = UCUM_UNITS.get(unit)
        if code is not None:
            out["system"] = UCUM
            out["code"] = code
    return out


def practitioner(user_id: int | None) -> dict[str, str] | None:
    return reference("Practitioner", user_id) if user_id is not None else None


# --- prescriptions --------------------------------------------------------------------------


def prescription_status(row: Any) -> str:
    if row.cancelled_on is not None:
        return "cancelled"
    return "active" if row.signed_at is not None else "draft"


def prescription_to_fhir(row: Any) -> Resource:
    per_unit = row.unit not in ("g", "ml", "mL")
    dosage = {
        "text": row.directions,
        "route": {"text": row.route},
        "doseAndRate": [{"doseQuantity": quantity(row.strength_mg, "mg")}] if per_unit else [],
    }
    return prune(
        {
            "resourceType": "MedicationRequest",
            "id": str(row.id),
            "meta": meta(latest(row.created_at, row.signed_at, row.cancelled_at), PROFILE),
            "status": prescription_status(row),
            "statusReason": {"text": row.cancel_reason} if row.cancel_reason else None,
            "intent": "order",
            "category": [
                {"coding": [coding(CATEGORY, "community", "Community")], "text": "Take-home prescription"}
            ],
            "medicationCodeableConcept": medication_concept(row.drug, row.product_name),
            "subject": reference("Patient", row.patient_id),
            "authoredOn": instant(row.signed_at or row.created_at),
            "requester": practitioner(row.prescriber_id),
            "note": [{"text": "Compounded product (not FDA-approved)"}] if row.compounded else [],
            "dosageInstruction": [dosage],
            "dispenseRequest": {
                "validityPeriod": {"start": date(row.issued_on)},
                "numberOfRepeatsAllowed": row.refills,
                "quantity": {"value": row.quantity, "unit": row.unit},
                "expectedSupplyDuration": {
                    "value": row.days_supply,
                    "unit": "days",
                    "system": UCUM,
                    "code": "d",
                },
            },
        }
    )


def _prescriptions(db: Session, scope: Scope) -> Iterator[Resource]:
    rx, cancel = table("prescriptions"), table("prescription_cancellations")
    query = (
        select(
            rx,
            cancel.c.cancelled_on,
            cancel.c.cancelled_at,
            cancel.c.reason.label("cancel_reason"),
        )
        .outerjoin(cancel, cancel.c.prescription_id == rx.c.id)
        .where(rx.c.clinic_id == scope.clinic_id)
        .order_by(rx.c.id)
    )
    query = narrowed(query, scope, rx.c.patient_id, rx.c.id)
    for row in db.execute(query):
        if changed_since(scope, latest(row.created_at, row.signed_at, row.cancelled_at)):
            yield prescription_to_fhir(row)


# --- treatment plans ----------------------------------------------------------------------------

PLAN_STATUS = {"planned": "draft", "scheduled": "active", "cancelled": "cancelled"}


def plan_drug(route: str) -> str:
    return "esketamine" if route.startswith("esketamine") else "ketamine"


def maps_cleanly(plan: Any) -> bool:
    return plan.dose_unit in UCUM_UNITS


def plan_to_fhir(plan: Any) -> Resource:
    name = (plan.protocol_snapshot or {}).get("name") or plan.protocol_key
    amount = quantity(plan.dose, plan.dose_unit)
    rate = plan.dose_unit in RATE_UNITS
    every = "every day" if plan.interval_days == 1 else f"every {plan.interval_days} days"
    text = (
        f"{plan.dose:g} {plan.dose_unit} {plan.route}, {plan.session_duration_min} min a session, "
        f"{plan.sessions} sessions {every} from {plan.start_date.isoformat()}"
    )
    return prune(
        {
            "resourceType": "MedicationRequest",
            "id": f"{PLAN_PREFIX}{plan.id}",
            "meta": meta(latest(plan.created_at, plan.cancelled_at), PROFILE),
            "status": PLAN_STATUS.get(plan.status, "unknown"),
            "statusReason": {"text": plan.cancel_reason} if plan.cancel_reason else None,
            "intent": "plan",
            "category": [{"coding": [coding(CATEGORY, "outpatient", "Outpatient")], "text": "Clinic series"}],
            "medicationCodeableConcept": medication_concept(
                plan_drug(plan.route), f"{plan_drug(plan.route)}: {name}"
            ),
            "subject": reference("Patient", plan.patient_id),
            "authoredOn": instant(plan.created_at),
            "requester": practitioner(plan.created_by_id),
            "reasonCode": [{"text": plan.indication}] if plan.indication else [],
            "note": [{"text": plan.notes}] if plan.notes else [],
            "dosageInstruction": [
                {
                    "text": text,
                    "timing": {
                        "repeat": {
                            "boundsPeriod": {"start": date(plan.start_date), "end": date(plan.end_date)},
                            "count": plan.sessions,
                            "duration": plan.session_duration_min,
                            "durationUnit": "min",
                            "period": plan.interval_days,
                            "periodUnit": "d",
                        }
                    },
                    "route": {"text": plan.route},
                    "doseAndRate": [{"rateQuantity": amount} if rate else {"doseQuantity": amount}],
                }
            ],
        }
    )


def plan_rows(db: Session, scope: Scope, ids: list[int] | None) -> Iterator[Any]:
    plans = table("treatment_plans")
    query = select(plans).where(plans.c.clinic_id == scope.clinic_id).order_by(plans.c.id)
    if scope.patient_ids is not None:
        query = query.where(plans.c.patient_id.in_(scope.patient_ids))
    if ids is not None:
        query = query.where(plans.c.id.in_(ids))
    yield from db.execute(query)


def _plans(db: Session, scope: Scope) -> Iterator[Resource]:
    for plan in plan_rows(db, scope, numeric_ids(scope.ids, PLAN_PREFIX)):
        if maps_cleanly(plan) and changed_since(scope, latest(plan.created_at, plan.cancelled_at)):
            yield plan_to_fhir(plan)


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    yield from _prescriptions(db, scope)
    yield from _plans(db, scope)


MAPPER = Mapper(
    resource_type="MedicationRequest",
    read=read,
    search_params=(
        SearchParam("status", "token", ("status",)),
        SearchParam("intent", "token", ("intent",)),
        SearchParam("code", "token", ("medicationCodeableConcept",)),
        SearchParam("authoredon", "date", ("authoredOn",)),
        SearchParam("requester", "reference", ("requester",)),
    ),
    patient_paths=("subject",),
    profile=PROFILE,
    documentation=(
        "Take-home ketamine prescriptions (intent order; id = prescription id) and each treatment "
        "plan's series (intent plan; id plan-<plan id>). RxNorm ingredient 6130 for ketamine; "
        "esketamine as text (no verified RxCUI)."
    ),
)
