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
from ketacare.interop.fhir.resources.observation_parts import (
    category_of,
    code_of,
    kind_by_code,
    number,
    profile_of,
    quantity,
    value_of,
)
from ketacare.knowledge.fhir_observation_codes import ObservationKind

PREFIX = "imported-"


def _value(kind: ObservationKind | None, value: float, unit: str | None) -> dict[str, Any]:
    """As the kind's own Observations carry it (pain NRS: ``valueInteger``) when the row is in the
    kind's unit; otherwise the stored value in its stored unit."""
    if kind is not None and (kind.value != "quantity" or kind.unit == unit):
        return value_of(kind, value)
    if unit is None:
        return {"valueQuantity": {"value": number(value)}}
    return {"valueQuantity": quantity(value, unit)}


def _code(kind: ObservationKind | None, system: str, code: str, display: str) -> dict[str, Any]:
    if kind is not None:
        return code_of(kind)
    return {"coding": [coding(system, code, display)], "text": display}


def to_fhir(row: Any) -> Resource:
    """A ``patient_observations`` row. A code the knowledge data knows (LOINC vital signs, the BP
    panel 85354-9, pain NRS 72514-3) goes out exactly as KetaCare's own Observations of that code:
    the same codings and displays, value type, category and US Core profile."""
    kind = kind_by_code(row.code_system, row.code)
    components = []
    for c in row.components or []:
        part = kind_by_code(c["code_system"], c["code"])
        components.append(
            {
                "code": _code(part, c["code_system"], c["code"], c["display"]),
                **_value(part, c["value"], c.get("unit")),
            }
        )
    return prune(
        {
            "resourceType": "Observation",
            "id": f"{PREFIX}{row.id}",
            "meta": meta(row.recorded_at, profile_of(kind)),
            "status": "final",
            "category": [category_of(kind.category if kind is not None else row.category)],
            "code": _code(kind, row.code_system, row.code, row.display),
            "subject": reference("Patient", row.patient_id),
            "effectiveDateTime": instant(row.effective_at),
            **(_value(kind, row.value, row.unit) if row.value is not None else {}),
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
