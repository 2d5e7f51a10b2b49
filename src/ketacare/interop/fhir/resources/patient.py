"""Patient (US Core Patient): demographics, the clinic's record number, contact details."""

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
    date,
    meta,
    narrowed,
    prune,
    record_number_system,
    reference,
    table,
)

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


def to_fhir(row: Any) -> Resource:
    """One patients row (joined with its clinic's slug) as a US Core Patient."""
    telecom = []
    if row.phone:
        telecom.append({"system": "phone", "value": row.phone, "use": "home"})
    if row.email:
        telecom.append({"system": "email", "value": row.email})
    address = {
        "use": "home",
        "line": [row.address_line] if row.address_line else [],
        "city": row.city,
        "state": row.state,
        "postalCode": row.postal_code,
        "country": "US",
    }
    has_address = any((row.address_line, row.city, row.state, row.postal_code))
    return prune(
        {
            "resourceType": "Patient",
            "id": str(row.id),
            "meta": meta(row.updated_at, PROFILE),
            "identifier": [
                {
                    "use": "usual",
                    "type": {
                        "coding": [
                            {"system": IDENTIFIER_TYPE, "code": "MR", "display": "Medical record number"}
                        ],
                        "text": "Medical record number",
                    },
                    "system": record_number_system(row.clinic_slug),
                    "value": row.record_number,
                }
            ],
            "active": True,
            "name": [{"use": "official", "family": row.family_name, "given": [row.given_name]}],
            "telecom": telecom,
            "gender": row.sex,
            "birthDate": date(row.date_of_birth),
            "address": [address] if has_address else [],
            "managingOrganization": reference("Organization", row.clinic_id),
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    p, c = table("patients"), table("clinics")
    query = (
        select(p, c.c.slug.label("clinic_slug"))
        .join(c, c.c.id == p.c.clinic_id)
        .where(p.c.clinic_id == scope.clinic_id)
        .order_by(p.c.id)
    )
    query = narrowed(query, scope, p.c.id, p.c.id)
    if scope.since is not None:
        query = query.where(p.c.updated_at >= scope.since)
    for row in db.execute(query.execution_options(yield_per=1000)):
        yield to_fhir(row)


MAPPER = Mapper(
    resource_type="Patient",
    read=read,
    search_params=(
        SearchParam("identifier", "token", ("identifier",)),
        SearchParam("birthdate", "date", ("birthDate",)),
        SearchParam("gender", "token", ("gender",)),
        SearchParam("family", "string", ("name.family",)),
        SearchParam("given", "string", ("name.given",)),
        SearchParam("name", "string", ("name.family", "name.given")),
    ),
    patient_paths=("id",),
    profile=PROFILE,
    documentation="Patients of the clinic; identifier is the clinic's record number.",
)
