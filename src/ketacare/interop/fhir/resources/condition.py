"""Condition (US Core Condition Problems and Health Concerns): the patient's recorded
diagnoses, coded in ICD-10-CM, with SNOMED CT where the knowledge base gives a code for the
condition group with a V or V* tag. Every recorded condition is on the problem list, active
and confirmed (the record has no resolved or provisional state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    ICD10CM,
    SNOMED,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    coding,
    concept,
    date,
    instant,
    meta,
    narrowed,
    prune,
    reference,
    table,
)
from ketacare.knowledge import condition_by_code, is_icd10_cm

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-problems-health-concerns"
SNOMED_TAGS = ("V", "V*")  # SNOMED codes tagged M in the facts are left out


def codings_for(icd10_code: str, display: str) -> list[dict[str, str]]:
    """The ICD-10-CM coding of a recorded code, and SNOMED CT where the knowledge base has one."""
    known = condition_by_code().get(icd10_code)
    out = []
    if is_icd10_cm(icd10_code):
        out.append(coding(ICD10CM, icd10_code, known[1].display if known else display))
    if known is not None:
        condition, _ = known
        if condition.snomed and condition.snomed_tag in SNOMED_TAGS:
            # No display: the facts give the code, not its SNOMED CT preferred term.
            out.append(coding(SNOMED, condition.snomed))
    return out


def to_fhir(row: Any) -> Resource:
    return prune(
        {
            "resourceType": "Condition",
            "id": str(row.id),
            "meta": meta(row.recorded_at, PROFILE),
            "clinicalStatus": concept(CONDITION_CLINICAL, "active", "Active"),
            "verificationStatus": concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
            "category": [concept(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")],
            "code": {"coding": codings_for(row.icd10_code, row.display), "text": row.display},
            "subject": reference("Patient", row.patient_id),
            "onsetDateTime": date(row.onset_date),
            "recordedDate": instant(row.recorded_at),
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    pc, p = table("patient_conditions"), table("patients")
    query = (
        select(pc)
        .join(p, p.c.id == pc.c.patient_id)
        .where(p.c.clinic_id == scope.clinic_id)
        .order_by(pc.c.id)
    )
    query = narrowed(query, scope, pc.c.patient_id, pc.c.id)
    if scope.since is not None:
        query = query.where(pc.c.recorded_at >= scope.since)
    for row in db.execute(query.execution_options(yield_per=1000)):
        yield to_fhir(row)


MAPPER = Mapper(
    resource_type="Condition",
    read=read,
    search_params=(
        SearchParam("code", "token", ("code",)),
        SearchParam("category", "token", ("category",)),
        SearchParam("clinical-status", "token", ("clinicalStatus",)),
        SearchParam("verification-status", "token", ("verificationStatus",)),
        SearchParam("onset-date", "date", ("onsetDateTime",)),
        SearchParam("recorded-date", "date", ("recordedDate",)),
    ),
    patient_paths=("subject",),
    profile=PROFILE,
    documentation=(
        "The patient's recorded diagnoses: ICD-10-CM, plus SNOMED CT for the condition group where "
        "sourced (tag V or V*); problem-list-item, active, confirmed."
    ),
)
