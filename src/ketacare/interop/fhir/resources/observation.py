"""Observation: one resource type fed by several tables, read in a stable order.

Each source is a function ``(db, scope) -> Iterator[Resource]`` in ``SOURCES``; its logical ids
carry its own prefix, so a read by id goes to the right table:

- ``vital-<row>-<kind>``: a session vital sign (session_vitals), LOINC and UCUM;
- ``bp-<systolic row>``: systolic and diastolic taken together, as ONE blood-pressure panel
  (85354-9) with two components; a systolic or diastolic reading without its partner is a
  ``vital-`` Observation of its own;
- ``measure-<row>-weight`` / ``measure-<row>-height``: patient_measurements;
- ``score-<row>``: a scale scored during a session (pain NRS, CADSS-6, MOAA/S, RASS);
- ``outcome-<row>``: a follow-up questionnaire's score, derived from the
  ``QuestionnaireResponse`` whose logical id is the follow-up's id.

Codes, units, categories and profiles come from knowledge/data/fhir_observation_codes.toml.
Every source keeps to the clinic through the patient's ``clinic_id``; ``since`` compares each
table's own recording time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Select, Table, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    Mapper,
    Resource,
    Scope,
    SearchParam,
    date,
    instant,
    meta,
    prune,
    reference,
    table,
    utc,
)
from ketacare.interop.fhir.resources.base import row_id as parse_row_id
from ketacare.interop.fhir.resources.imported_observations import imported_observations
from ketacare.interop.fhir.resources.observation_parts import (
    US_CORE as US_CORE,  # re-exported: where the profiles this module claims start
)
from ketacare.interop.fhir.resources.observation_parts import (
    VITAL_SIGNS_PROFILE,
    category_of,
    code_of,
    profile_of,
    value_of,
)
from ketacare.knowledge.fhir_observation_codes import ObservationKind, observation_kinds
from ketacare.knowledge.sessions import session_rules

BP_KINDS = ("sbp", "dbp")
PHASE_NOTES = {
    "before": "Scored before the session",
    "during": "Scored during the session",
    "after": "Scored after the session",
}

Source = Callable[[Session, Scope], Iterator[Resource]]


# --- building blocks -------------------------------------------------------------------------


def observation(
    logical_id: str,
    kind: ObservationKind,
    *,
    patient_id: int,
    effective: str | None,
    recorded: Any,
    value: dict[str, Any] | None = None,
    **more: Any,
) -> Resource:
    return prune(
        {
            "resourceType": "Observation",
            "id": logical_id,
            "meta": meta(recorded, profile_of(kind)),
            "status": "final",
            "category": [category_of(kind.category)],
            "code": code_of(kind),
            "subject": reference("Patient", patient_id),
            "effectiveDateTime": effective,
            **(value or {}),
            **more,
        }
    )


def row_ids(scope: Scope, *prefixes: str) -> list[int] | None:
    """The row ids behind the scope's logical ids with one of ``prefixes`` (``vital-12-hr``,
    ``bp-12``): the digits after the prefix, up to the next ``-``. ``None``: no ids asked."""
    if scope.ids is None:
        return None
    out = []
    for logical in scope.ids:
        for prefix in prefixes:
            if logical.startswith(prefix):
                found = parse_row_id(logical[len(prefix) :].split("-", 1)[0])
                if found is not None:
                    out.append(found)
    return out


def wanted(scope: Scope, resource: Resource) -> bool:
    """A resource read by row id is the one asked for only if its whole logical id matches."""
    return scope.ids is None or resource["id"] in scope.ids


def _narrowed(
    query: Select[Any], scope: Scope, patients: Table, row_id: Any, ids: list[int] | None
) -> Select[Any]:
    query = query.where(patients.c.clinic_id == scope.clinic_id)
    if scope.patient_ids is not None:
        query = query.where(patients.c.id.in_(scope.patient_ids))
    if ids is not None:
        query = query.where(row_id.in_(ids))
    return query.execution_options(yield_per=1000)


# --- sources ---------------------------------------------------------------------------------


def vital_signs(db: Session, scope: Scope) -> Iterator[Resource]:
    """Session vitals other than blood pressure (heart rate, SpO2, respiratory rate, ...)."""
    kinds = observation_kinds()["vital"]
    ids = row_ids(scope, "vital-")
    if ids == []:
        return
    v, s, p = table("session_vitals"), table("treatment_sessions"), table("patients")
    query = (
        select(v, s.c.patient_id)
        .join(s, s.c.id == v.c.session_id)
        .join(p, p.c.id == s.c.patient_id)
        .where(v.c.kind.in_([k for k in kinds if k not in BP_KINDS]))
        .order_by(v.c.id)
    )
    if scope.since is not None:
        query = query.where(v.c.received_at >= scope.since)
    for row in db.execute(_narrowed(query, scope, p, v.c.id, ids)):
        resource = _vital(row, kinds[row.kind])
        if wanted(scope, resource):
            yield resource


def _vital(row: Any, kind: ObservationKind) -> Resource:
    return observation(
        f"vital-{row.id}-{row.kind.replace('_', '-')}",
        kind,
        patient_id=row.patient_id,
        effective=instant(row.observed_at),
        recorded=row.received_at,
        value=value_of(kind, row.value),
        encounter=reference("Encounter", row.session_id),
    )


def blood_pressure(db: Session, scope: Scope) -> Iterator[Resource]:
    """Systolic readings with the diastolic taken at the same instant in the same session, as
    panels; then the readings that have no partner, each on its own."""
    kinds = observation_kinds()
    ids = row_ids(scope, "bp-", "vital-")
    if ids == []:
        return
    v, s, p = table("session_vitals"), table("treatment_sessions"), table("patients")
    sys_, dia = v.alias("sys"), v.alias("dia")
    same_reading = and_(
        dia.c.kind == "dbp", dia.c.session_id == sys_.c.session_id, dia.c.observed_at == sys_.c.observed_at
    )
    # The latest diastolic row of that instant (a correction is a new row).
    partner = select(func.max(dia.c.id)).where(same_reading).scalar_subquery()
    d = v.alias("d")
    query = (
        select(
            sys_,
            s.c.patient_id,
            d.c.id.label("dbp_id"),
            d.c.value.label("dbp_value"),
            d.c.received_at.label("dbp_received_at"),
        )
        .join(s, s.c.id == sys_.c.session_id)
        .join(p, p.c.id == s.c.patient_id)
        .outerjoin(d, d.c.id == partner)
        .where(sys_.c.kind == "sbp")
        .order_by(sys_.c.id)
    )
    if scope.since is not None:
        query = query.where(or_(sys_.c.received_at >= scope.since, d.c.received_at >= scope.since))
    for row in db.execute(_narrowed(query, scope, p, sys_.c.id, ids)):
        resource = (
            _vital(row, kinds["vital"]["sbp"]) if row.dbp_id is None else _panel(row, kinds["panel"]["bp"])
        )
        if wanted(scope, resource):
            yield resource
    # Diastolic readings with no systolic of the same instant.
    lone = (
        select(dia, s.c.patient_id)
        .join(s, s.c.id == dia.c.session_id)
        .join(p, p.c.id == s.c.patient_id)
        .where(dia.c.kind == "dbp", ~exists().where(sys_.c.kind == "sbp", same_reading))
        .order_by(dia.c.id)
    )
    if scope.since is not None:
        lone = lone.where(dia.c.received_at >= scope.since)
    for row in db.execute(_narrowed(lone, scope, p, dia.c.id, ids)):
        resource = _vital(row, kinds["vital"]["dbp"])
        if wanted(scope, resource):
            yield resource


def _panel(row: Any, panel: ObservationKind) -> Resource:
    vitals = observation_kinds()["vital"]
    recorded = max(utc(row.received_at), utc(row.dbp_received_at))
    return observation(
        f"bp-{row.id}",
        panel,
        patient_id=row.patient_id,
        effective=instant(row.observed_at),
        recorded=recorded,
        encounter=reference("Encounter", row.session_id),
        component=[
            {"code": code_of(vitals["sbp"]), **value_of(vitals["sbp"], row.value)},
            {"code": code_of(vitals["dbp"]), **value_of(vitals["dbp"], row.dbp_value)},
        ],
    )


def measurements(db: Session, scope: Scope) -> Iterator[Resource]:
    """Body weight and height (patient_measurements), effective on the day measured."""
    kinds = observation_kinds()["measurement"]
    ids = row_ids(scope, "measure-")
    if ids == []:
        return
    m, p = table("patient_measurements"), table("patients")
    query = select(m).join(p, p.c.id == m.c.patient_id).order_by(m.c.id)
    if scope.since is not None:
        query = query.where(m.c.recorded_at >= scope.since)
    for row in db.execute(_narrowed(query, scope, p, m.c.id, ids)):
        for column, suffix in (("weight_kg", "weight"), ("height_cm", "height")):
            value = getattr(row, column)
            if value is None:
                continue
            kind = kinds[column]
            resource = observation(
                f"measure-{row.id}-{suffix}",
                kind,
                patient_id=row.patient_id,
                effective=date(row.measured_on),
                recorded=row.recorded_at,
                value=value_of(kind, value),
            )
            if wanted(scope, resource):
                yield resource


def session_scores(db: Session, scope: Scope) -> Iterator[Resource]:
    """Scales scored during a session; a scale of several items carries each as a component."""
    kinds = observation_kinds()["scale"]
    scales = session_rules().scales
    ids = row_ids(scope, "score-")
    if ids == []:
        return
    sc, s, p = table("session_scores"), table("treatment_sessions"), table("patients")
    query = (
        select(sc, s.c.patient_id)
        .join(s, s.c.id == sc.c.session_id)
        .join(p, p.c.id == s.c.patient_id)
        .where(sc.c.scale.in_(list(kinds)))
        .order_by(sc.c.id)
    )
    if scope.since is not None:
        query = query.where(sc.c.recorded_at >= scope.since)
    for row in db.execute(_narrowed(query, scope, p, sc.c.id, ids)):
        kind = kinds[row.scale]
        scale = scales.get(row.scale)
        components = []
        if scale is not None and len(scale.items) > 1 and len(row.items) == len(scale.items):
            components = [
                {"code": {"text": name}, "valueInteger": int(item)}
                for name, item in zip(scale.items, row.items, strict=True)
            ]
        resource = observation(
            f"score-{row.id}",
            kind,
            patient_id=row.patient_id,
            effective=instant(row.observed_at),
            recorded=row.recorded_at,
            value=value_of(kind, row.total),
            encounter=reference("Encounter", row.session_id),
            note=[{"text": PHASE_NOTES.get(row.phase, f"Phase: {row.phase}")}],
            component=components,
        )
        if wanted(scope, resource):
            yield resource


def outcome_scores(db: Session, scope: Scope) -> Iterator[Resource]:
    """Follow-up questionnaire scores (outcomes), derived from the follow-up's response."""
    kinds = observation_kinds()["outcome"]
    ids = row_ids(scope, "outcome-")
    if ids == []:
        return
    o, p = table("outcome_scores"), table("patients")
    query = (
        select(o).join(p, p.c.id == o.c.patient_id).where(o.c.instrument.in_(list(kinds))).order_by(o.c.id)
    )
    if scope.since is not None:
        query = query.where(o.c.answered_at >= scope.since)
    for row in db.execute(_narrowed(query, scope, p, o.c.id, ids)):
        kind = kinds[row.instrument]
        resource = observation(
            f"outcome-{row.id}",
            kind,
            patient_id=row.patient_id,
            effective=instant(row.answered_at),
            recorded=row.answered_at,
            value=value_of(kind, row.score),
            derivedFrom=[reference("QuestionnaireResponse", row.follow_up_id)],
            note=[{"text": f"Follow-up: {row.timepoint.replace('_', ' ')}"}],
        )
        if wanted(scope, resource):
            yield resource


# Read in this order. Another source (e.g. Observations imported from other systems) is added
# by appending its function here; give its logical ids a prefix of their own.
SOURCES: tuple[Source, ...] = (
    vital_signs,
    blood_pressure,
    measurements,
    session_scores,
    outcome_scores,
    imported_observations,
)


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    for source in SOURCES:
        yield from source(db, scope)


MAPPER = Mapper(
    resource_type="Observation",
    read=read,
    search_params=(
        SearchParam("code", "token", ("code",)),
        SearchParam("component-code", "token", ("component.code",)),
        SearchParam("category", "token", ("category",)),
        SearchParam("date", "date", ("effectiveDateTime", "effectivePeriod")),
        SearchParam("status", "token", ("status",)),
        SearchParam("encounter", "reference", ("encounter",)),
        SearchParam("derived-from", "reference", ("derivedFrom",)),
    ),
    patient_paths=("subject",),
    profile=VITAL_SIGNS_PROFILE,
    documentation=(
        "Session vital signs (LOINC, UCUM; blood pressure as the 85354-9 panel), body weight and "
        "height, session scores (pain NRS 72514-3; CADSS-6, MOAA/S, RASS with local codes) and "
        "follow-up questionnaire scores (derivedFrom the QuestionnaireResponse). Logical ids are "
        "prefixed by source: vital-, bp-, measure-, score-, outcome-."
    ),
)
