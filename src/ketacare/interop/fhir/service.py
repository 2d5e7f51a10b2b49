"""The FHIR use-cases: read, search, ``Patient/$everything`` and the CapabilityStatement.

Every read stays in the reader's clinic, is limited to the resource types a token's SMART
scopes grant, and writes one audit entry per patient whose data it returned.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from ketacare import __version__
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import Forbidden, InvalidInput, NotFound, PendingAudit
from ketacare.interop.fhir import search
from ketacare.interop.fhir.resources import mappers
from ketacare.interop.fhir.resources.base import Mapper, Resource, Scope, row_id
from ketacare.interop.fhir.resources.questionnaire import questionnaire_id

FHIR_VERSION = "4.0.1"


@dataclass(frozen=True)
class Page:
    resources: list[Resource]
    more: bool  # another page follows
    total: int | None = None  # known when the search was counted (``_count=0``) or fits one page


@dataclass(frozen=True)
class Everything:
    matches: list[Resource]  # the patient and every resource in their compartment
    included: list[Resource]  # the clinic, staff, places and questionnaires those point at


def mapper_for(resource_type: str) -> Mapper:
    found = mappers().get(resource_type)
    if found is None:
        raise NotFound(f"This server has no resource type {resource_type!r}; see /fhir/R4/metadata.")
    return found


def may_read(actor: Principal, mapper: Mapper) -> bool:
    allowed = auth.fhir_types_readable(actor)
    if allowed is not None and mapper.resource_type not in allowed:
        return False
    if actor.role is None:
        # A type that needs a role's permission (AuditEvent: audit_read) is for people only:
        # tokens are made by clinic admins, who hold no such permission to hand on.
        return mapper.permission is None
    held = auth.permissions_of(actor)
    if mapper.permission is not None:
        return mapper.permission in held
    # A person who may not read patients (an auditor) reads only the types whose own
    # permission they hold (AuditEvent), not the clinical record.
    return Permission.patient_read in held


def check_type(actor: Principal, resource_type: str) -> None:
    if not may_read(actor, mapper_for(resource_type)):
        raise Forbidden(
            f"Reading {resource_type} needs system/{resource_type}.read (tokens) or a role that holds it.",
            audit=[PendingAudit("access.denied", "fhir", resource_type, detail="scope")],
        )


def patient_ids_of(mapper: Mapper, resource: Resource) -> set[int]:
    """The KetaCare patient ids a resource is about (empty for non-patient resources)."""
    found: set[int] = set()
    for path in (*mapper.patient_paths, *mapper.listed_patient_paths):
        if path == "id":
            found.add(int(resource["id"]))
            continue
        for value in search.values_at(resource, path):
            ref = value.get("reference", "") if isinstance(value, dict) else ""
            patient_id = row_id(ref[8:]) if ref.startswith("Patient/") else None
            if patient_id is not None:
                found.add(patient_id)
    return found


def _audit_reads(
    db: Session, actor: Principal, action: str, mapper: Mapper, resources: Sequence[Resource]
) -> None:
    per_patient: dict[int, list[str]] = {}
    for resource in resources:
        for patient_id in patient_ids_of(mapper, resource):
            per_patient.setdefault(patient_id, []).append(resource["id"])
    events = [
        audit.AuditEvent(
            action,
            f"fhir.{mapper.resource_type}",
            resource_id=ids[0] if len(ids) == 1 else None,
            patient_id=patient_id,
            detail=f"{len(ids)} {mapper.resource_type}",
        )
        for patient_id, ids in sorted(per_patient.items())
    ]
    if mapper.permission is not None:
        # A read that needs its own permission (the audit trail) is recorded even when it
        # names no patient, as the audit page records its searches.
        events.append(
            audit.AuditEvent(action, f"fhir.{mapper.resource_type}", detail=f"{len(resources)} read")
        )
    audit.record_many(db, actor, events)


def read(db: Session, actor: Principal, resource_type: str, logical_id: str) -> Resource:
    mapper = mapper_for(resource_type)
    check_type(actor, resource_type)
    found = next(iter(mapper.read(db, Scope(actor.clinic_id, ids=[logical_id]))), None)
    if found is None:
        raise NotFound(f"{resource_type}/{logical_id} is not in this clinic's record.")
    _audit_reads(db, actor, "fhir.read", mapper, [found])
    return found


def _filtered(
    db: Session, mapper: Mapper, clinic_id: int, request: search.SearchRequest
) -> Iterator[Resource]:
    scope = Scope(
        clinic_id,
        patient_ids=request.patient_ids,
        ids=request.ids,
        since=search.since_bound(request),
    )
    return (r for r in mapper.read(db, scope) if search.matches(request, r))


def search_page(
    db: Session, actor: Principal, resource_type: str, query: Sequence[tuple[str, str]]
) -> tuple[search.SearchRequest, Page]:
    mapper = mapper_for(resource_type)
    check_type(actor, resource_type)
    request = search.parse(mapper, query)
    matching = _filtered(db, mapper, actor.clinic_id, request)
    if request.count == 0:  # only how many (FHIR R4 search 3.1.1.5.7: _count=0)
        return request, Page([], more=False, total=sum(1 for _ in matching))
    found = list(itertools.islice(matching, request.offset, request.offset + request.count + 1))
    more = len(found) > request.count
    total = None if more or request.offset else len(found)
    page = Page(found[: request.count], more=more, total=total)
    _audit_reads(db, actor, "fhir.search", mapper, page.resources)
    return request, page


def everything(
    db: Session,
    actor: Principal,
    patient_id: int,
    *,
    types: Iterable[str] | None = None,
    since: str | None = None,
) -> Everything:
    """The patient, every resource about them, and the clinic and staff they reference."""
    wanted = set(types) if types is not None else None
    for name in wanted or ():
        mapper_for(name)
    since_at = None
    if since is not None:
        try:
            since_at = search.parse_date(since).start
        except ValueError as exc:
            raise InvalidInput(f"_since: {exc}", errors={"_since": str(exc)}) from exc
    patient = read(db, actor, "Patient", str(patient_id))
    out: list[Resource] = [patient]
    for name, mapper in mappers().items():
        if name == "Patient" or not mapper.patient_data:
            continue
        if (wanted is not None and name not in wanted) or not may_read(actor, mapper):
            continue
        found = list(mapper.read(db, Scope(actor.clinic_id, patient_ids=[patient_id], since=since_at)))
        _audit_reads(db, actor, "fhir.everything", mapper, found)
        out.extend(found)
    return Everything(out, _referenced(db, actor, out, wanted))


def _referenced(
    db: Session, actor: Principal, resources: Sequence[Resource], wanted: set[str] | None
) -> list[Resource]:
    """The non-patient resources (Organization, Practitioner, Location, Questionnaire...) that
    the record points at, so the bundle stands on its own."""
    refs: dict[str, set[str]] = {}
    for resource in resources:
        for ref in _references(resource):
            kind, _, logical = ref.partition("/")
            refs.setdefault(kind, set()).add(logical)
    out: list[Resource] = []
    for kind, ids in sorted(refs.items()):
        mapper = mappers().get(kind)
        if mapper is None or mapper.patient_data:
            continue
        if (wanted is not None and kind not in wanted) or not may_read(actor, mapper):
            continue
        out.extend(mapper.read(db, Scope(actor.clinic_id, ids=sorted(ids))))
    return out


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and "/" in ref and not ref.startswith(("#", "urn:", "http")):
            yield ref
        canonical = value.get("questionnaire")  # QuestionnaireResponse -> our Questionnaire
        if isinstance(canonical, str) and (logical := questionnaire_id(canonical)) is not None:
            yield f"Questionnaire/{logical}"
        for v in value.values():
            yield from _references(v)
    elif isinstance(value, list):
        for v in value:
            yield from _references(v)


# --- bundles ---------------------------------------------------------------------------------


def searchset(base_url: str, resource_type: str, request: search.SearchRequest, page: Page) -> Resource:
    def link(relation: str, offset: int) -> dict[str, str]:
        params = [*request.params, ("_offset", str(offset))]
        return {"relation": relation, "url": f"{base_url}/{resource_type}?{urlencode(params)}"}

    links = [link("self", request.offset)]
    if page.more:
        links.append(link("next", request.offset + request.count))
    if request.offset > 0:
        links.append(link("previous", max(0, request.offset - request.count)))
    bundle: Resource = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if page.total is not None:
        bundle["total"] = page.total
    if page.resources:  # FHIR has no empty arrays
        bundle["entry"] = [entry(base_url, r) for r in page.resources]
    return bundle


def entry(base_url: str, resource: Resource, mode: str = "match") -> Resource:
    return {
        "fullUrl": f"{base_url}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def everything_bundle(self_url: str, base_url: str, found: Everything) -> Resource:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found.matches),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [entry(base_url, r) for r in found.matches]
        + [entry(base_url, r, "include") for r in found.included],
    }


def capability_statement(base_url: str, published: str, operations: Sequence[Resource] = ()) -> Resource:
    resources = []
    for name, mapper in mappers().items():
        item: Resource = {
            "type": name,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": "_id", "type": "token"},
                {"name": "_lastUpdated", "type": "date"},
                *(
                    {"name": p, "type": "reference"}
                    for p in sorted(search.PATIENT_PARAMS)
                    if mapper.patient_data and name != "Patient"
                ),
                *({"name": p.name, "type": p.kind} for p in mapper.search_params),
            ],
        }
        if mapper.profile:
            item["supportedProfile"] = [mapper.profile]
        if mapper.documentation:
            item["documentation"] = mapper.documentation
        if name == "Patient":
            item["operation"] = [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }
            ]
        resources.append(item)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "KetaCare",
        "kind": "instance",
        "software": {"name": "KetaCare", "version": __version__},
        "implementation": {"description": "KetaCare FHIR R4 API", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": (
                        "Bearer tokens issued by a clinic admin (Settings > API tokens) with SMART-style "
                        "scopes: system/*.read, system/<Type>.read, system/*.write (import); or a "
                        "staff member's logged-in session."
                    ),
                },
                "resource": resources,
                "operation": list(operations),
            }
        ],
    }
