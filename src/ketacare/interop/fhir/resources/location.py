"""Location (US Core Location): the clinic's treatment chairs, managed by the clinic. Not
patient data. Chairs carry no change time, so ``_since`` never leaves one out."""

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
    numeric_ids,
    prune,
    reference,
    table,
)

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-location"


def to_fhir(row: Any) -> Resource:
    """One clinic_chairs row (outer-joined with the clinic's directory profile for the address)."""
    address = {
        "use": "work",
        "line": [row.street] if row.street else [],
        "city": row.city,
        "state": row.state,
        "postalCode": row.zip,
        "country": "US",
    }
    return prune(
        {
            "resourceType": "Location",
            "id": str(row.id),
            "meta": {"profile": [PROFILE]},
            "status": "active" if row.active else "inactive",
            "name": f"{row.name}, {row.room}",
            "alias": [row.name],
            "description": f"Treatment chair {row.name} in {row.room}",
            "mode": "instance",
            "physicalType": {"text": "Treatment chair"},
            "address": address if any((row.street, row.city, row.state, row.zip)) else None,
            "managingOrganization": reference("Organization", row.clinic_id),
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    chairs, d = table("clinic_chairs"), table("directory_profiles")
    query = (
        select(chairs, d.c.street, d.c.city, d.c.state, d.c.zip)
        .outerjoin(d, d.c.clinic_id == chairs.c.clinic_id)
        .where(chairs.c.clinic_id == scope.clinic_id)
        .order_by(chairs.c.id)
    )
    ids = numeric_ids(scope.ids)
    if ids is not None:
        query = query.where(chairs.c.id.in_(ids))
    for row in db.execute(query):
        yield to_fhir(row)


MAPPER = Mapper(
    resource_type="Location",
    read=read,
    search_params=(
        SearchParam("name", "string", ("name", "alias")),
        SearchParam("status", "token", ("status",)),
        SearchParam("organization", "reference", ("managingOrganization",)),
    ),
    profile=PROFILE,
    documentation="The clinic's treatment chairs (name, room); managingOrganization is the clinic.",
)
