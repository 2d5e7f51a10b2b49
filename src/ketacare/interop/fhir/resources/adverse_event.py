"""AdverseEvent: adverse events recorded during or after a session (``adverse_events``).

- ``event``: the session catalogue term as text, with its key in ``urn:ketacare:adverse-event``
  (the facts give no MedDRA or SNOMED codes for the catalogue).
- ``seriousness``: serious / non-serious (terminology.hl7.org adverse-event-seriousness).
- ``severity``: R4 binds it to mild / moderate / severe, while we grade with CTCAE 1-5: grade 1
  is mild, 2 moderate, 3 and above severe. The exact grade is kept beside it in the same
  CodeableConcept as ``urn:ketacare:ctcae-grade`` code ``1``..``5`` and in its text.
- ``outcome``: resolved, resolving -> recovering, not resolved -> ongoing, resolved with
  sequelae -> resolvedWithSequelae, fatal, unknown.
- ``suspectEntity``: the session's drug (ketamine: RxNorm ingredient 6130) as a contained
  Medication, since R4 wants a reference there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    KETACARE_SYSTEM,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    changed_since,
    coding,
    instant,
    latest,
    meta,
    narrowed,
    prune,
    reference,
    table,
)
from ketacare.interop.fhir.resources.medication_request import (
    medication_concept,
    practitioner,
)
from ketacare.knowledge.sessions import session_rules

SERIOUSNESS = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
OUTCOME = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
TERM_SYSTEM = f"{KETACARE_SYSTEM}:adverse-event"
CTCAE_GRADE_SYSTEM = f"{KETACARE_SYSTEM}:ctcae-grade"
OUTCOMES = {
    "resolved": ("resolved", "Resolved"),
    "resolving": ("recovering", "Recovering"),
    "not_resolved": ("ongoing", "Ongoing"),
    "resolved_with_sequelae": ("resolvedWithSequelae", "Resolved with Sequelae"),
    "fatal": ("fatal", "Fatal"),
    "unknown": ("unknown", "Unknown"),
}


def severity_code(grade: int) -> tuple[str, str]:
    """CTCAE grade -> the R4 severity: 1 mild, 2 moderate, 3 or more severe."""
    if grade <= 1:
        return "mild", "Mild"
    return ("moderate", "Moderate") if grade == 2 else ("severe", "Severe")


def severity(grade: int) -> dict[str, Any]:
    meaning = dict(session_rules().ctcae_grades).get(grade, "")
    code, display = severity_code(grade)
    return {
        "coding": [
            coding(SEVERITY, code, display),
            coding(CTCAE_GRADE_SYSTEM, str(grade), f"CTCAE grade {grade}"),
        ],
        "text": f"CTCAE grade {grade}" + (f": {meaning}" if meaning else ""),
    }


def to_fhir(row: Any) -> Resource:
    drug = row.drug or "ketamine"
    outcome = OUTCOMES.get(row.outcome, ("unknown", "Unknown"))
    serious = ("serious", "Serious") if row.serious else ("non-serious", "Non-serious")
    return prune(
        {
            "resourceType": "AdverseEvent",
            "id": str(row.id),
            "meta": meta(latest(row.recorded_at, row.reviewed_at)),
            "contained": [{"resourceType": "Medication", "id": "suspect", "code": medication_concept(drug)}],
            "actuality": "actual",
            "category": [{"text": "Adverse event during or after a ketamine session"}],
            "event": {"coding": [coding(TERM_SYSTEM, row.term_key, row.term)], "text": row.term},
            "subject": reference("Patient", row.patient_id),
            "encounter": reference("Encounter", row.session_id) if row.session_id else None,
            "date": instant(row.onset_at),
            "recordedDate": instant(row.recorded_at),
            "seriousness": {"coding": [coding(SERIOUSNESS, *serious)], "text": serious[1]},
            "severity": severity(row.grade),
            "outcome": {"coding": [coding(OUTCOME, *outcome)], "text": row.outcome.replace("_", " ")},
            "recorder": practitioner(row.recorded_by_id),
            "suspectEntity": [{"instance": {"reference": "#suspect", "display": drug}}],
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    ae, sessions = table("adverse_events"), table("treatment_sessions")
    query = (
        select(ae, sessions.c.drug)
        .outerjoin(sessions, sessions.c.id == ae.c.session_id)
        .where(ae.c.clinic_id == scope.clinic_id)
        .order_by(ae.c.id)
    )
    query = narrowed(query, scope, ae.c.patient_id, ae.c.id)
    for row in db.execute(query):
        if changed_since(scope, latest(row.recorded_at, row.reviewed_at)):
            yield to_fhir(row)


MAPPER = Mapper(
    resource_type="AdverseEvent",
    read=read,
    search_params=(
        SearchParam("date", "date", ("date",)),
        SearchParam("event", "token", ("event",)),
        SearchParam("seriousness", "token", ("seriousness",)),
        SearchParam("severity", "token", ("severity",)),
        SearchParam("recorder", "reference", ("recorder",)),
    ),
    patient_paths=("subject",),
    documentation=(
        "Adverse events of ketamine sessions: catalogue term (local code), seriousness, severity from "
        "the CTCAE grade (1 mild, 2 moderate, >= 3 severe; the exact grade as urn:ketacare:ctcae-grade), "
        "outcome; suspect entity ketamine (RxNorm 6130)."
    ),
)
