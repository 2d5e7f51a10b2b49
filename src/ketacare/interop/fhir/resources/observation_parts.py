"""The pieces every Observation source shares (``observation.py``'s own sources and
``imported_observations.py``): how a kind of measurement from knowledge/data/
fhir_observation_codes.toml is coded, valued, categorised and profiled. One place, so a session
pain NRS and an imported one go out alike. No ``MAPPER`` here."""

from __future__ import annotations

from functools import cache
from typing import Any

from ketacare.interop.fhir.resources.base import OBSERVATION_CATEGORY, UCUM, coding
from ketacare.knowledge.fhir_observation_codes import ObservationKind, observation_kinds

US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
VITAL_SIGNS_PROFILE = US_CORE + "us-core-vital-signs"
CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "survey": "Survey"}


def number(value: float) -> int | float:
    """A whole number without its ``.0`` (what a FHIR decimal round-trips to)."""
    return int(value) if float(value).is_integer() else value


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": number(value), "unit": unit, "system": UCUM, "code": unit}


def code_of(kind: ObservationKind) -> dict[str, Any]:
    return {"coding": [coding(c.system, c.code, c.display) for c in kind.codings], "text": kind.text}


def value_of(kind: ObservationKind, value: float) -> dict[str, Any]:
    """``{"valueQuantity": ...}`` or ``{"valueInteger": ...}`` as the kind wants."""
    if kind.value == "quantity" and kind.unit:
        return {"valueQuantity": quantity(value, kind.unit)}
    if kind.value == "integer" and float(value).is_integer():
        return {"valueInteger": int(value)}
    return {"valueQuantity": {"value": number(value)}}


def category_of(category: str) -> dict[str, Any]:
    return {
        "coding": [coding(OBSERVATION_CATEGORY, category, CATEGORY_DISPLAY.get(category))],
        "text": CATEGORY_DISPLAY.get(category, category),
    }


def profile_of(kind: ObservationKind | None) -> str | None:
    """The US Core profile the kind's Observations claim, if any."""
    return US_CORE + kind.profile if kind is not None and kind.profile else None


@cache
def _by_primary_code() -> dict[tuple[str, str], ObservationKind]:
    found: dict[tuple[str, str], ObservationKind] = {}
    for kinds in observation_kinds().values():
        for kind in kinds.values():
            first = kind.codings[0]
            found.setdefault((first.system, first.code), kind)
    return found


def kind_by_code(system: str, code: str) -> ObservationKind | None:
    """The kind whose first (primary) coding is ``system|code``: pain NRS 72514-3 is the session
    scale's kind (the follow-up NRS is coded alike). A code that is only a kind's second coding
    (2708-6 beside pulse oximetry's 59408-5) is not that kind."""
    return _by_primary_code().get((system, code))


def display_of(system: str, code: str) -> str | None:
    """The display the knowledge data gives ``system|code``, if it codes it."""
    kind = kind_by_code(system, code)
    return next((c.display for c in kind.codings if c.code == code), None) if kind else None
