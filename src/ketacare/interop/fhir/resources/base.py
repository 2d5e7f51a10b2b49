"""What every resource module provides, and the small helpers they share.

A resource module defines ``MAPPER = Mapper(...)``: its type, how to read its rows for a
clinic (narrowed by a ``Scope``), and which search parameters it supports as paths into the
FHIR JSON it produces. ``resources/__init__`` discovers the modules; nothing else lists them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, Table
from sqlalchemy.orm import Session

from ketacare import models
from ketacare.auth.permissions import Permission

Resource = dict[str, Any]

# Code systems (FHIR R4 terminology URIs).
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# Our own identifiers: a system per clinic for record numbers, and one for internal row ids.
KETACARE_SYSTEM = "urn:ketacare"


def record_number_system(clinic_slug: str) -> str:
    return f"{KETACARE_SYSTEM}:clinic:{clinic_slug}:record-number"


@dataclass(frozen=True)
class Scope:
    """Which rows to read. Every read is within one clinic; the rest narrows it."""

    clinic_id: int
    patient_ids: Sequence[int] | None = None  # only these patients' resources
    ids: Sequence[str] | None = None  # only these FHIR logical ids
    since: dt.datetime | None = None  # only resources changed at or after this instant


@dataclass(frozen=True)
class SearchParam:
    """A search parameter as paths into the resource's JSON (dotted; lists are walked).

    ``kind`` is ``token`` (a code, Coding, CodeableConcept or Identifier), ``date`` (a date,
    dateTime, instant or Period), ``string`` (starts with, case-insensitive; ``:exact`` and
    ``:contains`` modifiers) or ``reference`` (a Reference's ``reference``).
    """

    name: str
    kind: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Mapper:
    resource_type: str
    read: Callable[[Session, Scope], Iterator[Resource]]
    search_params: tuple[SearchParam, ...] = ()
    # Paths holding a reference to the patient ("subject", "patient"); empty: not patient data.
    patient_paths: tuple[str, ...] = ()
    # Paths to patients a resource lists without being their data (Group.member.entity): a read
    # is audited per listed patient, but the type stays out of the patient compartment exports.
    listed_patient_paths: tuple[str, ...] = ()
    profile: str | None = None  # the US Core profile the resources claim, where one exists
    documentation: str = ""
    # A permission people need beyond fhir_read (AuditEvent: audit_read); tokens need the type's
    # scope or system/*.read as for any type.
    permission: Permission | None = None
    search_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "search_names", frozenset(p.name for p in self.search_params))

    @property
    def patient_data(self) -> bool:
        return bool(self.patient_paths)


def table(name: str) -> Table:
    return models.metadata.tables[name]


def instant(value: dt.datetime | None) -> str | None:
    """An ``instant``/``dateTime`` in UTC with its offset, to the second."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def date(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def reference(resource_type: str, logical_id: str | int, display: str | None = None) -> dict[str, str]:
    ref = {"reference": f"{resource_type}/{logical_id}"}
    if display:
        ref["display"] = display
    return ref


def meta(last_updated: dt.datetime | None, profile: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if last_updated is not None:
        out["lastUpdated"] = instant(last_updated)
    if profile:
        out["profile"] = [profile]
    return out


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if text or display:
        out["text"] = text or display
    return out


def prune(resource: Resource) -> Resource:
    """Drop keys whose value is ``None``, an empty string, list or dict, at every depth: FHIR
    forbids empty elements (and a string must hold a non-whitespace character)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            cleaned = {k: clean(v) for k, v in value.items()}
            return {k: v for k, v in cleaned.items() if not _empty(v)}
        if isinstance(value, list):
            items = [clean(v) for v in value]
            return [v for v in items if not _empty(v)]
        return value

    result: Resource = clean(resource)
    return result


def utc(value: dt.datetime) -> dt.datetime:
    """A stored time as UTC-aware (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else utc(value)


def latest(*values: dt.datetime | None) -> dt.datetime | None:
    found = [v for v in (aware(x) for x in values) if v is not None]
    return max(found) if found else None


def changed_since(scope: Scope, last_updated: dt.datetime | None) -> bool:
    """Whether a resource last changed at ``last_updated`` is within the scope's ``since``."""
    since = aware(scope.since)
    return since is None or (last_updated is not None and last_updated >= since)


def narrowed(
    query: Select[Any], scope: Scope, patient_id: Any, row_id: Any, id_prefix: str = ""
) -> Select[Any]:
    """``query`` limited to the scope's patients (by the ``patient_id`` column) and logical ids
    (``id_prefix`` + the ``row_id`` column)."""
    if scope.patient_ids is not None:
        query = query.where(patient_id.in_(scope.patient_ids))
    ids = numeric_ids(scope.ids, id_prefix)
    if ids is not None:
        query = query.where(row_id.in_(ids))
    return query


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or (isinstance(value, str) and not value.strip())


def row_id(text: str) -> int | None:
    """The row id a logical id (or its numeric part) stands for: ASCII digits in canonical form
    (no leading zero: ``05`` is no id, so one resource never has two), at most 18 of them (a
    64-bit integer); anything else stands for no row."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or text.startswith("0"):
        return None
    return int(text)


def numeric_ids(ids: Sequence[str] | None, prefix: str = "") -> list[int] | None:
    """The row ids behind logical ids like ``"12"`` (or ``"vital-12"`` with ``prefix="vital-"``);
    ids of another shape match nothing. ``None`` when the scope names no ids."""
    if ids is None:
        return None
    found = (row_id(logical[len(prefix) :]) for logical in ids if logical.startswith(prefix))
    return [n for n in found if n is not None]
