"""Encounter (US Core Encounter): a treatment session.

Status follows FHIR R4's Encounter.status definitions: checked in is ``arrived``; from the
pre-checks until the patient leaves (running, recovery, ready for discharge: still in the
chair, observed) ``in-progress``; discharged ``finished``; an aborted session ``cancelled``
when it ended before dosing began ("ended before it has begun") and ``finished`` once dosing
had started. The period and status history come from the session's transitions. The
participants are the nurse and the prescriber, the location its chair, the service provider
the clinic. ``reasonReference`` points at the patient's Conditions only where the plan's
indication names a knowledge-base condition group and the patient has conditions coded in it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    ACT_CODE,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    coding,
    instant,
    meta,
    narrowed,
    prune,
    reference,
    table,
)
from ketacare.interop.fhir.resources.practitioner import practitioner_ids
from ketacare.knowledge import pain_conditions
from ketacare.sessions.report import ROUTE_LABELS

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter"
STATUS = {
    "scheduled": "planned",
    "checked_in": "arrived",
    "prechecks_done": "in-progress",
    "running": "in-progress",
    "recovery": "in-progress",
    "ready_for_discharge": "in-progress",
    "discharged": "finished",
}
FINAL = ("finished", "cancelled")
DOSING_BEGUN = ("running", "recovery", "ready_for_discharge")
BATCH = 500


def fhir_status(status: str, dosing_begun: bool) -> str:
    if status == "aborted":
        return "finished" if dosing_begun else "cancelled"
    return STATUS.get(status, "unknown")


def status_history(transitions: Sequence[Any]) -> list[Resource]:
    """Each FHIR status the session passed through, with when (consecutive states that map to
    the same FHIR status are one entry); a current status that is not final is open-ended."""
    out: list[Resource] = []
    begun = False
    for i, t in enumerate(transitions):
        begun = begun or t.to_status in DOSING_BEGUN
        status = fhir_status(t.to_status, begun)
        end = instant(transitions[i + 1].at) if i + 1 < len(transitions) else None
        if out and out[-1]["status"] == status:
            out[-1]["period"]["end"] = end
            continue
        if status in FINAL:
            break  # Encounter.status says it; a final status has no span
        out.append({"status": status, "period": {"start": instant(t.at), "end": end}})
    return out


def to_fhir(
    row: Any,
    transitions: Sequence[Any],
    practitioners: set[int],
    conditions: dict[int, list[tuple[int, str]]],
) -> Resource:
    begun = row.started_at is not None or any(t.to_status in DOSING_BEGUN for t in transitions)
    start = transitions[0].at if transitions else row.checked_in_at
    final = [t.at for t in transitions if t.to_status in ("discharged", "aborted")]
    end = final[-1] if final else (row.discharged_at or row.aborted_at)
    participants = [
        {"type": [{"text": role}], "individual": reference("Practitioner", user_id)}
        for role, user_id in (("nurse", row.nurse_id), ("prescriber", row.prescriber_id))
        if user_id is not None and user_id in practitioners
    ]
    route = ROUTE_LABELS.get(row.route, row.route)
    reasons = _reason_conditions(row.indication, conditions.get(row.patient_id, []))
    return prune(
        {
            "resourceType": "Encounter",
            "id": str(row.id),
            "meta": meta(row.changed_at or row.checked_in_at, PROFILE),
            "status": fhir_status(row.status, begun),
            "statusHistory": status_history(transitions),
            "class": coding(ACT_CODE, "AMB", "ambulatory"),
            "type": [{"text": f"{row.drug.capitalize()} treatment session ({route})"}],
            "subject": reference("Patient", row.patient_id),
            "participant": participants,
            "period": {"start": instant(start), "end": instant(end)},
            "reasonCode": [{"text": row.indication}] if row.indication else [],
            "reasonReference": [reference("Condition", cid) for cid in reasons],
            "location": [{"location": reference("Location", row.chair_id)}] if row.chair_id else [],
            "serviceProvider": reference("Organization", row.clinic_id),
        }
    )


def _reason_conditions(indication: str | None, held: Sequence[tuple[int, str]]) -> list[int]:
    """The patient's conditions coded in the condition group the plan's indication names."""
    group = next((c for c in pain_conditions() if c.name == indication), None)
    if group is None:
        return []
    codes = {code.code for code in group.codes}
    return [cid for cid, icd in held if icd in codes]


def _conditions(db: Session, patient_ids: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
    pc = table("patient_conditions")
    query = select(pc.c.id, pc.c.patient_id, pc.c.icd10_code).where(pc.c.patient_id.in_(patient_ids))
    out: dict[int, list[tuple[int, str]]] = {}
    for cid, patient_id, icd in db.execute(query.order_by(pc.c.id)):
        out.setdefault(patient_id, []).append((cid, icd))
    return out


def _transitions(db: Session, session_ids: Sequence[int]) -> dict[int, list[Any]]:
    t = table("session_transitions")
    query = select(t).where(t.c.session_id.in_(session_ids)).order_by(t.c.session_id, t.c.at, t.c.id)
    out: dict[int, list[Any]] = {}
    for row in db.execute(query):
        out.setdefault(row.session_id, []).append(row)
    return out


def _batches(rows: Iterator[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    s, p, plan, t = (
        table("treatment_sessions"),
        table("patients"),
        table("treatment_plans"),
        table("session_transitions"),
    )
    changed = select(t.c.session_id, func.max(t.c.at).label("changed_at")).group_by(t.c.session_id).subquery()
    query = (
        select(s, plan.c.indication, changed.c.changed_at)
        .join(p, p.c.id == s.c.patient_id)
        .join(plan, plan.c.id == s.c.plan_id)
        .outerjoin(changed, changed.c.session_id == s.c.id)
        .where(p.c.clinic_id == scope.clinic_id, s.c.clinic_id == scope.clinic_id)
        .order_by(s.c.id)
    )
    query = narrowed(query, scope, s.c.patient_id, s.c.id)
    if scope.since is not None:
        query = query.where(or_(changed.c.changed_at >= scope.since, s.c.checked_in_at >= scope.since))
    practitioners = practitioner_ids(db, scope.clinic_id)
    rows = db.execute(query.execution_options(yield_per=BATCH))
    for batch in _batches(iter(rows)):
        transitions = _transitions(db, [r.id for r in batch])
        conditions = _conditions(db, sorted({r.patient_id for r in batch}))
        for row in batch:
            yield to_fhir(row, transitions.get(row.id, []), practitioners, conditions)


MAPPER = Mapper(
    resource_type="Encounter",
    read=read,
    search_params=(
        SearchParam("date", "date", ("period",)),
        SearchParam("status", "token", ("status",)),
        SearchParam("class", "token", ("class",)),
        SearchParam("type", "token", ("type",)),
        SearchParam("participant", "reference", ("participant.individual",)),
        SearchParam("practitioner", "reference", ("participant.individual",)),
        SearchParam("location", "reference", ("location.location",)),
        SearchParam("service-provider", "reference", ("serviceProvider",)),
        SearchParam("reason-reference", "reference", ("reasonReference",)),
    ),
    patient_paths=("subject",),
    profile=PROFILE,
    documentation=(
        "Treatment sessions: class AMB; status from the session state (aborted before dosing: "
        "cancelled; after: finished); period and statusHistory from the state transitions; nurse "
        "and prescriber, chair (Location), clinic (serviceProvider); reasonReference to the "
        "Conditions the plan's indication covers."
    ),
)
