"""Group: one per treatment protocol of the clinic, its members the patients with a plan of that
protocol. The cohorts a Bulk Data ``Group/{id}/$export`` names.

A Group is not a patient's data (it stays out of ``$everything`` and patient-level exports), but
reading one lists patients, so each read is audited per listed patient (``listed_patient_paths``).
The logical id is ``protocol-`` and the protocol key made id-safe; keys that would collide get a
numbered suffix in key order, so an id stays the same while the clinic's keys do.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    Mapper,
    Resource,
    Scope,
    SearchParam,
    date,
    meta,
    prune,
    reference,
    table,
)
from ketacare.planning import setup as plan_setup

ID_PREFIX = "protocol-"
_NOT_ID_SAFE = re.compile(r"[^A-Za-z0-9]+")


@dataclass
class _Member:
    patient_id: int
    first_start: dt.date
    active: bool


@dataclass
class _Cohort:
    key: str
    name: str
    members: dict[int, _Member] = field(default_factory=dict)
    changed_at: dt.datetime | None = None


def logical_ids(keys: list[str]) -> dict[str, str]:
    """Protocol key -> Group id (``^[A-Za-z0-9\\-.]{1,64}$``), unique within the clinic."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for key in sorted(keys):
        stem = ID_PREFIX + (_NOT_ID_SAFE.sub("-", key).strip("-").lower() or "x")[:50]
        candidate, n = stem, 1
        while candidate in taken:
            n += 1
            candidate = f"{stem}.{n}"
        taken.add(candidate)
        out[key] = candidate
    return out


def _cohorts(db: Session, clinic_id: int) -> dict[str, _Cohort]:
    cohorts = {p.key: _Cohort(p.key, p.name) for p in plan_setup.protocols(db, clinic_id)}
    plans = table("treatment_plans")
    rows = db.execute(
        select(
            plans.c.protocol_key,
            plans.c.protocol_snapshot,
            plans.c.patient_id,
            plans.c.status,
            plans.c.start_date,
            plans.c.created_at,
            plans.c.cancelled_at,
        )
        .where(plans.c.clinic_id == clinic_id)
        .order_by(plans.c.id)
    )
    for row in rows:
        name = str((row.protocol_snapshot or {}).get("name") or row.protocol_key)
        cohort = cohorts.setdefault(row.protocol_key, _Cohort(row.protocol_key, name))
        active = row.status != "cancelled"
        member = cohort.members.get(row.patient_id)
        if member is None:
            cohort.members[row.patient_id] = _Member(row.patient_id, row.start_date, active)
        else:
            member.first_start = min(member.first_start, row.start_date)
            member.active = member.active or active
        for at in (row.created_at, row.cancelled_at):
            if at is not None and (cohort.changed_at is None or at > cohort.changed_at):
                cohort.changed_at = at
    return cohorts


def to_fhir(logical_id: str, cohort: _Cohort, clinic_id: int) -> Resource:
    members = sorted(cohort.members.values(), key=lambda m: m.patient_id)
    return prune(
        {
            "resourceType": "Group",
            "id": logical_id,
            "meta": meta(cohort.changed_at),
            "identifier": [{"system": "urn:ketacare:protocol", "value": cohort.key}],
            "active": True,
            "type": "person",
            "actual": True,
            "name": f"Patients on the protocol: {cohort.name}",
            "quantity": len(members),
            "managingEntity": reference("Organization", clinic_id),
            "member": [
                {
                    "entity": reference("Patient", m.patient_id),
                    "period": {"start": date(m.first_start)},
                    "inactive": None if m.active else True,
                }
                for m in members
            ],
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    cohorts = _cohorts(db, scope.clinic_id)
    ids = logical_ids(list(cohorts))
    wanted = set(scope.ids) if scope.ids is not None else None
    patients = set(scope.patient_ids) if scope.patient_ids is not None else None
    for key in sorted(cohorts, key=lambda k: ids[k]):
        cohort = cohorts[key]
        if wanted is not None and ids[key] not in wanted:
            continue
        if patients is not None and not patients & set(cohort.members):
            continue
        if scope.since is not None and (cohort.changed_at is None or cohort.changed_at < scope.since):
            continue
        yield to_fhir(ids[key], cohort, scope.clinic_id)


def member_ids(db: Session, clinic_id: int, logical_id: str) -> list[int] | None:
    """The patients of one Group (members whose plans were all cancelled included); ``None``
    when the clinic has no such Group."""
    cohorts = _cohorts(db, clinic_id)
    for key, found in logical_ids(list(cohorts)).items():
        if found == logical_id:
            return sorted(cohorts[key].members)
    return None


MAPPER = Mapper(
    resource_type="Group",
    read=read,
    search_params=(
        SearchParam("identifier", "token", ("identifier",)),
        SearchParam("type", "token", ("type",)),
        SearchParam("actual", "token", ("actual",)),
        SearchParam("member", "reference", ("member.entity",)),
        SearchParam("name", "string", ("name",)),
    ),
    listed_patient_paths=("member.entity",),
    documentation=(
        "One Group per treatment protocol of the clinic; members are the patients with a plan of "
        "that protocol (inactive when every such plan was cancelled). Use it for Group/{id}/$export."
    ),
)
