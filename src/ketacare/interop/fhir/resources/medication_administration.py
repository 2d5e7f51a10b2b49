"""MedicationAdministration: a treatment session's administration record.

One resource per administration row (logical id = the row id), except ``stop`` rows:

- An infusion is modelled as constant-rate pieces. A ``start`` or ``rate_change`` row opens a
  piece at its rate (``dosage.rateQuantity`` in UCUM mg/h, as recorded; a rate of 0 is a
  pause); the next start, rate change or stop of the same session closes it
  (``effectivePeriod.end``). A stop row is not a resource of its own: it is the end of the
  last piece. A closed piece is ``completed``; an open one is ``in-progress`` while the session
  runs, ``stopped`` if the session was aborted, ``unknown`` otherwise.
- A bolus, a dose, a premedication or a rescue drug is given at one instant
  (``effectiveDateTime``) with ``dosage.dose`` in mg.

Ketamine carries the RxNorm ingredient (clinical-facts 7.3); other drugs (ondansetron,
midazolam ...) are text only, as the facts give them no code. ``context`` is the session's
Encounter and ``performer`` the staff member who recorded the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    Mapper,
    Resource,
    Scope,
    SearchParam,
    changed_since,
    coding,
    instant,
    latest,
    meta,
    numeric_ids,
    prune,
    reference,
    table,
)
from ketacare.interop.fhir.resources.medication_request import (
    medication_concept,
    practitioner,
    quantity,
)

CATEGORY = "http://terminology.hl7.org/CodeSystem/medication-admin-category"
INFUSION_KINDS = ("start", "rate_change", "stop")
KIND_TEXT = {
    "start": "Infusion start",
    "rate_change": "Infusion rate change",
    "bolus": "Bolus",
    "dose": "Dose",
    "premedication": "Premedication",
    "rescue": "Rescue medication",
}


def open_status(session_status: str) -> str:
    if session_status == "running":
        return "in-progress"
    return "stopped" if session_status == "aborted" else "unknown"


def to_fhir(row: Any, closing: Any | None) -> Resource:
    infusion = row.kind in INFUSION_KINDS
    dosage: dict[str, Any]
    what = KIND_TEXT.get(row.kind, row.kind)
    if infusion:
        status = "completed" if closing is not None else open_status(row.session_status)
        per_kg = (
            f" ({row.rate_mg_per_h / row.weight_kg:.3g} mg/kg/h at {row.weight_kg:g} kg)"
            if row.weight_kg and row.rate_mg_per_h is not None
            else ""
        )
        text = f"{what}: {row.rate_mg_per_h:g} mg/h{per_kg}"
        dosage = {"text": text, "rateQuantity": quantity(row.rate_mg_per_h, "mg/h")}
    else:
        status = "completed"
        dose = f"{row.dose_mg:g} mg" if row.dose_mg is not None else "dose not recorded"
        dosage = {"text": f"{what}: {dose}", "dose": quantity(row.dose_mg, "mg")}
    if row.concentration_mg_per_ml:
        dosage["text"] += f", {row.concentration_mg_per_ml:g} mg/mL"
    dosage["route"] = {"text": row.route}
    effective: dict[str, Any] = (
        {
            "effectivePeriod": {
                "start": instant(row.given_at),
                "end": instant(closing.given_at) if closing else None,
            }
        }
        if infusion
        else {"effectiveDateTime": instant(row.given_at)}
    )
    notes = [f"Lot {row.lot}"] if row.lot else []
    if closing is not None and closing.kind == "stop" and closing.reason:
        notes.append(f"Stopped: {closing.reason}")
    return prune(
        {
            "resourceType": "MedicationAdministration",
            "id": str(row.id),
            "meta": meta(latest(row.recorded_at, closing.recorded_at if closing else None)),
            "status": status,
            "category": {"coding": [coding(CATEGORY, "outpatient", "Outpatient")], "text": what},
            "medicationCodeableConcept": medication_concept(row.drug, row.product or row.drug),
            "subject": reference("Patient", row.patient_id),
            "context": reference("Encounter", row.session_id),
            **effective,
            "performer": [{"actor": practitioner(row.recorded_by_id)}] if row.recorded_by_id else [],
            "reasonCode": [{"text": row.reason}] if row.reason and row.kind != "stop" else [],
            "note": [{"text": n} for n in notes],
            "dosage": dosage,
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    adm, sessions = table("session_administrations"), table("treatment_sessions")
    query = (
        select(
            adm,
            sessions.c.patient_id,
            sessions.c.status.label("session_status"),
            sessions.c.weight_kg,
        )
        .join(sessions, sessions.c.id == adm.c.session_id)
        .where(sessions.c.clinic_id == scope.clinic_id)
        .order_by(adm.c.session_id, adm.c.given_at, adm.c.id)
    )
    if scope.patient_ids is not None:
        query = query.where(sessions.c.patient_id.in_(scope.patient_ids))
    ids = numeric_ids(scope.ids)
    if ids is not None:
        # The whole session's rows: a piece of infusion ends at a later row.
        wanted = select(adm.c.session_id).where(adm.c.id.in_(ids))
        query = query.where(adm.c.session_id.in_(wanted))
    rows = list(db.execute(query))
    closing: dict[int, Any] = {}
    open_piece: dict[int, Any] = {}
    for row in rows:
        if row.kind not in INFUSION_KINDS:
            continue
        previous = open_piece.pop(row.session_id, None)
        if previous is not None:
            closing[previous.id] = row
        if row.kind != "stop":
            open_piece[row.session_id] = row
    for row in rows:
        if row.kind == "stop" or (ids is not None and row.id not in ids):
            continue
        resource = to_fhir(row, closing.get(row.id))
        if changed_since(scope, latest(row.recorded_at, getattr(closing.get(row.id), "recorded_at", None))):
            yield resource


MAPPER = Mapper(
    resource_type="MedicationAdministration",
    read=read,
    search_params=(
        SearchParam("status", "token", ("status",)),
        SearchParam("code", "token", ("medicationCodeableConcept",)),
        SearchParam("effective-time", "date", ("effectiveDateTime", "effectivePeriod")),
        SearchParam("context", "reference", ("context",)),
        SearchParam("performer", "reference", ("performer.actor",)),
    ),
    patient_paths=("subject",),
    documentation=(
        "A session's administration record: ketamine infusion pieces at a constant rate (UCUM mg/h, "
        "one per start or rate change, closed by the next change or the stop), boluses, doses, "
        "premedication and rescue drugs; context = the session's Encounter."
    ),
)
