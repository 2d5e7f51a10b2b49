"""Organization (US Core Organization): the clinic, with the address and phone of its
directory profile. A reader sees their own clinic only; it is not patient data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    KETACARE_SYSTEM,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    meta,
    numeric_ids,
    prune,
    table,
)

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-organization"
CLINIC_SYSTEM = f"{KETACARE_SYSTEM}:clinic"


def to_fhir(row: Any) -> Resource:
    """One clinics row (outer-joined with its directory profile) as a US Core Organization."""
    stamps = [s for s in (row.created_at, row.profile_updated_at) if s is not None]
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
            "resourceType": "Organization",
            "id": str(row.id),
            "meta": meta(max(stamps) if stamps else None, PROFILE),
            "identifier": [{"system": CLINIC_SYSTEM, "value": row.slug}],
            "active": True,
            "name": row.name,
            "telecom": [{"system": "phone", "value": row.public_phone, "use": "work"}]
            if row.public_phone
            else [],
            "address": [address] if any((row.street, row.city, row.state, row.zip)) else [],
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    ids = numeric_ids(scope.ids)
    if ids is not None and scope.clinic_id not in ids:
        return
    c, d = table("clinics"), table("directory_profiles")
    query = (
        select(
            c.c.id,
            c.c.name,
            c.c.slug,
            c.c.created_at,
            d.c.street,
            d.c.city,
            d.c.state,
            d.c.zip,
            d.c.public_phone,
            d.c.updated_at.label("profile_updated_at"),
        )
        .outerjoin(d, d.c.clinic_id == c.c.id)
        .where(c.c.id == scope.clinic_id)
    )
    if scope.since is not None:
        query = query.where(or_(c.c.created_at >= scope.since, d.c.updated_at >= scope.since))
    for row in db.execute(query):
        yield to_fhir(row)


MAPPER = Mapper(
    resource_type="Organization",
    read=read,
    search_params=(
        SearchParam("identifier", "token", ("identifier",)),
        SearchParam("name", "string", ("name",)),
        SearchParam("address-city", "string", ("address.city",)),
        SearchParam("address-state", "string", ("address.state",)),
    ),
    profile=PROFILE,
    documentation="The reader's own clinic; address and phone from its directory profile.",
)
