"""Observations recorded by other systems and imported (``patient_observations``), for the
Observation mapper's chain of sources: they go out again with their original code, in the unit
KetaCare stores them in. Logical ids ``imported-<row id>``. No ``MAPPER`` here: the Observation
type is ``observation.py``'s."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    OBSERVATION_CATEGORY,
    UCUM,
    Resource,
    Scope,
    coding,
    instant,
    meta,
    numeric_ids,
    prune,
    reference,
    table,
)

PREFIX = "imported-"
CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "survey": "Survey"}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _value(value: float, unit: str | None) -> dict[str, Any]:
    if unit is None:
        return {"valueQuantity": {"value": _number(value)}}
    return {"valueQuantity": {"value": _number(value), "unit": unit, "system": UCUM, "code": unit}}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)], "text": display}


def to_fhir(row: Any) -> Resource:
    components = [
        {"code": _concept(c["code_system"], c["code"], c["display"]), **_value(c["value"], c.get("unit"))}
        for c in row.components or []
    ]
    return prune(
        {
            "resourceType": "Observation",
            "id": f"{PREFIX}{row.id}",
            "meta": meta(row.recorded_at),
            "status": "final",
            "category": [
                {
                    "coding": [
                        coding(OBSERVATION_CATEGORY, row.category, CATEGORY_DISPLAY.get(row.category))
                    ],
                    "text": CATEGORY_DISPLAY.get(row.category, row.category),
                }
            ],
            "code": _concept(row.code_system, row.code, row.display),
            "subject": reference("Patient", row.patient_id),
            "effectiveDateTime": instant(row.effective_at),
            **(_value(row.value, row.unit) if row.value is not None else {}),
            "component": components,
            "note": [{"text": f"Recorded by another system ({row.source})."}],
        }
    )


def imported_observations(db: Session, scope: Scope) -> Iterator[Resource]:
    ids = numeric_ids(scope.ids, PREFIX)
    if ids == []:
        return
    o, p = table("patient_observations"), table("patients")
    query = (
        select(o).join(p, p.c.id == o.c.patient_id).where(p.c.clinic_id == scope.clinic_id).order_by(o.c.id)
    )
    if scope.patient_ids is not None:
        query = query.where(p.c.id.in_(scope.patient_ids))
    if ids is not None:
        query = query.where(o.c.id.in_(ids))
    if scope.since is not None:
        query = query.where(o.c.recorded_at >= scope.since)
    for row in db.execute(query.execution_options(yield_per=1000)):
        yield to_fhir(row)
