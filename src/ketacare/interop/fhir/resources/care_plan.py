"""CarePlan: a treatment plan (logical id = the plan id) with its care-plan items as activities.

- ``status``: planned -> draft, scheduled -> active, cancelled -> revoked.
- ``addresses``: the patient's Conditions (``Condition/<patient_conditions id>``) whose ICD-10-CM
  code belongs to the plan's indication in the knowledge condition list; none where the
  indication matches no recorded condition.
- The ketamine series is the first activity: a reference to the plan's MedicationRequest
  (``MedicationRequest/plan-<id>``, intent plan) with the session count and bookings in
  ``progress``; a plan that has no such MedicationRequest (a dose in percent) describes the
  series in ``activity.detail`` instead.
- Each care-plan item (physical therapy, CBT, sleep ...) is an activity with its category as a
  local code (``urn:ketacare:care-category``), description, owner and due date.

Care-plan items that belong to no treatment plan form one CarePlan per patient, logical id
``items-<patient id>``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    KETACARE_SYSTEM,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    aware,
    changed_since,
    coding,
    date,
    instant,
    latest,
    meta,
    numeric_ids,
    prune,
    reference,
    table,
)
from ketacare.interop.fhir.resources.medication_request import (
    PLAN_PREFIX,
    maps_cleanly,
    medication_concept,
    plan_drug,
    plan_rows,
    practitioner,
)
from ketacare.knowledge import pain_conditions

CATEGORY_SYSTEM = f"{KETACARE_SYSTEM}:care-category"
ITEMS_PREFIX = "items-"
PLAN_STATUS = {"planned": "draft", "scheduled": "active", "cancelled": "revoked"}
ITEM_STATUS = {
    "planned": "not-started",
    "in_progress": "in-progress",
    "done": "completed",
    "stopped": "stopped",
}
SERIES_STATUS = {"planned": "not-started", "scheduled": "scheduled", "cancelled": "cancelled"}


def item_activity(item: Any) -> dict[str, Any]:
    label = item.category.replace("_", " ")
    return {
        "detail": {
            "code": {"coding": [coding(CATEGORY_SYSTEM, item.category, label)], "text": label},
            "status": ITEM_STATUS.get(item.status, "unknown"),
            "description": item.description,
            "scheduledPeriod": {"end": date(item.due_on)} if item.due_on else None,
            "performer": [{"display": item.owner}] if item.owner else [],
        }
    }


def series_activity(plan: Any, booked: int) -> dict[str, Any]:
    every = "every day" if plan.interval_days == 1 else f"every {plan.interval_days} days"
    progress = f"{plan.sessions} ketamine sessions planned, {every}; {booked} booked"
    if maps_cleanly(plan):
        return {
            "progress": [{"text": progress}],
            "reference": reference("MedicationRequest", f"{PLAN_PREFIX}{plan.id}"),
        }
    return {
        "progress": [{"text": progress}],
        "detail": {
            "kind": "MedicationRequest",
            "status": SERIES_STATUS.get(plan.status, "unknown"),
            "description": f"{plan.dose:g} {plan.dose_unit} {plan.route}, {plan.session_duration_min} min",
            "scheduledTiming": {
                "repeat": {"count": plan.sessions, "period": plan.interval_days, "periodUnit": "d"}
            },
            "productCodeableConcept": medication_concept(plan_drug(plan.route)),
        },
    }


def conditions_for(indication: str | None, patient_conditions: list[Any]) -> list[dict[str, str]]:
    codes = {c.code for cond in pain_conditions() if cond.name == indication for c in cond.codes}
    return [reference("Condition", c.id, c.display) for c in patient_conditions if c.icd10_code in codes]


def to_fhir(plan: Any, items: list[Any], conditions: list[Any], booked: int) -> Resource:
    last = latest(plan.created_at, plan.cancelled_at, *(i.updated_at for i in items))
    return prune(
        {
            "resourceType": "CarePlan",
            "id": str(plan.id),
            "meta": meta(last),
            "status": PLAN_STATUS.get(plan.status, "unknown"),
            "intent": "plan",
            "category": [{"text": f"Ketamine {plan.purpose}"}],
            "title": (plan.protocol_snapshot or {}).get("name") or plan.protocol_key,
            "description": plan.notes,
            "subject": reference("Patient", plan.patient_id),
            "period": {"start": date(plan.start_date), "end": date(plan.end_date)},
            "created": instant(plan.created_at),
            "author": practitioner(plan.created_by_id),
            "addresses": conditions_for(plan.indication, conditions),
            "note": [{"text": f"Indication: {plan.indication}"}] if plan.indication else [],
            "activity": [series_activity(plan, booked), *(item_activity(i) for i in items)],
        }
    )


def loose_items_to_fhir(patient_id: int, items: list[Any]) -> Resource:
    return prune(
        {
            "resourceType": "CarePlan",
            "id": f"{ITEMS_PREFIX}{patient_id}",
            "meta": meta(latest(*(i.updated_at for i in items))),
            "status": "active",
            "intent": "plan",
            "category": [{"text": "Care-plan items outside a treatment plan"}],
            "subject": reference("Patient", patient_id),
            "activity": [item_activity(i) for i in items],
        }
    )


def _items(db: Session, scope: Scope) -> list[Any]:
    items, patients = table("care_plan_items"), table("patients")
    query = (
        select(items)
        .join(patients, patients.c.id == items.c.patient_id)
        .where(patients.c.clinic_id == scope.clinic_id)
        .order_by(items.c.id)
    )
    if scope.patient_ids is not None:
        query = query.where(items.c.patient_id.in_(scope.patient_ids))
    return list(db.execute(query))


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    by_plan: dict[int | None, list[Any]] = defaultdict(list)
    loose: dict[int, list[Any]] = defaultdict(list)
    for item in _items(db, scope):
        (by_plan[item.plan_id] if item.plan_id is not None else loose[item.patient_id]).append(item)
    plans = list(plan_rows(db, scope, numeric_ids(scope.ids)))
    conditions: dict[int, list[Any]] = defaultdict(list)
    booked: dict[int, int] = {}
    if plans:
        cond, sessions = table("patient_conditions"), table("plan_sessions")
        patient_ids = sorted({p.patient_id for p in plans})
        for row in db.execute(select(cond).where(cond.c.patient_id.in_(patient_ids)).order_by(cond.c.id)):
            conditions[row.patient_id].append(row)
        counts = (
            select(sessions.c.plan_id, func.count())
            .where(sessions.c.plan_id.in_([p.id for p in plans]), sessions.c.status == "booked")
            .group_by(sessions.c.plan_id)
        )
        booked = {plan_id: n for plan_id, n in db.execute(counts)}
    for plan in plans:
        resource = to_fhir(plan, by_plan[plan.id], conditions[plan.patient_id], booked.get(plan.id, 0))
        if changed_since(scope, aware_last(resource)):
            yield resource
    wanted = numeric_ids(scope.ids, ITEMS_PREFIX)
    for patient_id, items in sorted(loose.items()):
        if wanted is not None and patient_id not in wanted:
            continue
        resource = loose_items_to_fhir(patient_id, items)
        if changed_since(scope, aware_last(resource)):
            yield resource


def aware_last(resource: Resource) -> dt.datetime | None:
    stamp = resource.get("meta", {}).get("lastUpdated")
    return aware(dt.datetime.fromisoformat(stamp)) if stamp else None


MAPPER = Mapper(
    resource_type="CarePlan",
    read=read,
    search_params=(
        SearchParam("status", "token", ("status",)),
        SearchParam("intent", "token", ("intent",)),
        SearchParam("date", "date", ("period",)),
        SearchParam("condition", "reference", ("addresses",)),
        SearchParam("activity-code", "token", ("activity.detail.code",)),
    ),
    patient_paths=("subject",),
    documentation=(
        "Treatment plans with their care-plan items (physical therapy, CBT, sleep ...; local codes "
        "urn:ketacare:care-category) as activities; the ketamine series points at the plan's "
        "MedicationRequest (intent plan)."
    ),
)
