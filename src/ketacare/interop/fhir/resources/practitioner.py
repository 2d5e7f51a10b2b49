"""Practitioner (US Core Practitioner): the clinic's prescribers and nurses.

Never a password, TOTP or login field. The NPI comes from the prescribing feature's profile
table where one is recorded; qualifications from its licence, DEA and board tables where the
record is clean (a DEA registration whose name did not match the holder's is left out). Not
patient data; a staff member's record has no change time of its own, so ``_since`` compares
the latest of the account's creation and its credential records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    KETACARE_SYSTEM,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    date,
    meta,
    numeric_ids,
    prune,
    table,
    utc,
)

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
PRACTITIONER_ROLES = ("prescriber", "nurse")
# Letters after a name that are credentials, not the family name ("Dana Okafor MD").
CREDENTIALS = frozenset(
    {"MD", "DO", "NP", "RN", "PA", "PA-C", "CRNA", "APRN", "DNP", "FNP", "FNP-C", "LPN", "PHD", "MBBS"}
)


def staff_system(clinic_slug: str) -> str:
    return f"{KETACARE_SYSTEM}:clinic:{clinic_slug}:staff"


def practitioner_ids(db: Session, clinic_id: int) -> set[int]:
    """The ids of the clinic's users served as Practitioner (for references from elsewhere)."""
    u = table("users")
    query = select(u.c.id).where(u.c.clinic_id == clinic_id, u.c.role.in_(PRACTITIONER_ROLES))
    return set(db.execute(query).scalars())


def human_name(full_name: str) -> dict[str, Any]:
    """``full_name`` as a HumanName: the last word that is not a credential is the family name."""
    words = full_name.split()
    suffix: list[str] = []
    while len(words) > 1 and words[-1].replace(".", "").upper() in CREDENTIALS:
        suffix.insert(0, words.pop())
    return prune(
        {
            "use": "official",
            "text": full_name,
            "family": words[-1] if words else None,
            "given": words[:-1],
            "suffix": suffix,
        }
    )


def _period_end(expires_on: dt.date | None) -> dict[str, str] | None:
    return {"end": date(expires_on) or ""} if expires_on is not None else None


def _qualifications(licences: Sequence[Any], deas: Sequence[Any], boards: Sequence[Any]) -> list[Resource]:
    out: list[Resource] = []
    for lic in licences:
        out.append(
            {
                "identifier": [
                    {"system": f"{KETACARE_SYSTEM}:state-licence:{lic.state}", "value": lic.number}
                ],
                "code": {"text": f"{lic.profession} licence ({lic.state})"},
                "period": _period_end(lic.expires_on),
                "issuer": {"display": f"State of {lic.state}"},
            }
        )
    for dea in deas:
        if dea.name_mismatch_reason:
            continue
        out.append(
            {
                "identifier": [{"system": f"{KETACARE_SYSTEM}:dea-registration", "value": dea.number}],
                "code": {"text": f"DEA registration ({dea.state})"},
                "period": _period_end(dea.expires_on),
                "issuer": {"display": "Drug Enforcement Administration"},
            }
        )
    for board in boards:
        out.append(
            {
                "code": {"text": f"Board certification: {board.specialty}"},
                "period": _period_end(board.expires_on),
                "issuer": {"display": board.board},
            }
        )
    return out


def to_fhir(
    row: Any, clinic_slug: str, licences: Sequence[Any], deas: Sequence[Any], boards: Sequence[Any]
) -> Resource:
    identifiers: list[Resource] = []
    if row.npi:
        identifiers.append({"use": "official", "system": NPI_SYSTEM, "value": row.npi})
    identifiers.append({"use": "usual", "system": staff_system(clinic_slug), "value": str(row.id)})
    return prune(
        {
            "resourceType": "Practitioner",
            "id": str(row.id),
            "meta": meta(_changed(row, licences, deas, boards), PROFILE),
            "identifier": identifiers,
            "active": bool(row.is_active),
            "name": [human_name(row.full_name)],
            "telecom": [{"system": "email", "value": row.email, "use": "work"}] if row.email else [],
            "qualification": _qualifications(licences, deas, boards),
        }
    )


def _changed(row: Any, *credentials: Sequence[Any]) -> dt.datetime:
    stamps = [row.created_at, *(s for s in (row.npi_updated_at,) if s is not None)]
    stamps.extend(c.recorded_at for group in credentials for c in group)
    return max(utc(s) for s in stamps)


def _by_user(db: Session, name: str, clinic_id: int, user_ids: Sequence[int]) -> dict[int, list[Any]]:
    t = table(name)
    query = select(t).where(t.c.clinic_id == clinic_id, t.c.user_id.in_(user_ids)).order_by(t.c.id)
    out: dict[int, list[Any]] = {}
    for row in db.execute(query):
        out.setdefault(row.user_id, []).append(row)
    return out


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    u, c, prof = table("users"), table("clinics"), table("rx_prescriber_profiles")
    query = (
        select(
            u.c.id,
            u.c.full_name,
            u.c.email,
            u.c.is_active,
            u.c.created_at,
            prof.c.npi,
            prof.c.updated_at.label("npi_updated_at"),
        )
        .outerjoin(prof, (prof.c.user_id == u.c.id) & (prof.c.clinic_id == u.c.clinic_id))
        .where(u.c.clinic_id == scope.clinic_id, u.c.role.in_(PRACTITIONER_ROLES))
        .order_by(u.c.id)
    )
    ids = numeric_ids(scope.ids)
    if ids is not None:
        query = query.where(u.c.id.in_(ids))
    rows = list(db.execute(query))
    if not rows:
        return
    slug = db.execute(select(c.c.slug).where(c.c.id == scope.clinic_id)).scalar_one()
    user_ids = [r.id for r in rows]
    licences = _by_user(db, "rx_state_licences", scope.clinic_id, user_ids)
    deas = _by_user(db, "rx_dea_registrations", scope.clinic_id, user_ids)
    boards = _by_user(db, "rx_board_certifications", scope.clinic_id, user_ids)
    for row in rows:
        held = (licences.get(row.id, []), deas.get(row.id, []), boards.get(row.id, []))
        if scope.since is not None and _changed(row, *held) < scope.since:
            continue
        yield to_fhir(row, slug, *held)


MAPPER = Mapper(
    resource_type="Practitioner",
    read=read,
    search_params=(
        SearchParam("identifier", "token", ("identifier",)),
        SearchParam("name", "string", ("name.family", "name.given", "name.text")),
        SearchParam("family", "string", ("name.family",)),
        SearchParam("given", "string", ("name.given",)),
        SearchParam("active", "token", ("active",)),
    ),
    profile=PROFILE,
    documentation=(
        "The clinic's prescribers and nurses; NPI (us-npi) where recorded; state licences, DEA "
        "registrations and board certifications as qualifications."
    ),
)
