"""How each measurement KetaCare records is coded as a FHIR Observation, from
``data/fhir_observation_codes.toml``: codes (each with its source and tag), UCUM unit, category
and US Core profile."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from ketacare.knowledge import Sourced, _load

GROUPS = ("vital", "panel", "measurement", "scale", "outcome")
VALUE_KINDS = ("quantity", "integer", "decimal")
TAGS = ("V", "V*", "M", "design")


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str
    sourced: Sourced


@dataclass(frozen=True)
class ObservationKind:
    group: str
    key: str
    text: str
    category: str  # observation-category code: vital-signs or survey
    value: str  # quantity, integer or decimal
    unit: str | None  # UCUM, for quantity values
    profile: str | None  # US Core profile name (us-core-heart-rate), where one applies
    codings: tuple[Code, ...]


def _kind(group: str, key: str, row: dict[str, Any]) -> ObservationKind:
    codings = tuple(
        Code(c["system"], c["code"], c["display"], Sourced(c["source"], c["tag"])) for c in row["codings"]
    )
    kind = ObservationKind(
        group=group,
        key=key,
        text=row["text"],
        category=row["category"],
        value=row["value"],
        unit=row.get("unit"),
        profile=row.get("profile"),
        codings=codings,
    )
    if kind.value not in VALUE_KINDS or not codings or any(c.sourced.tag not in TAGS for c in codings):
        raise ValueError(f"fhir_observation_codes.toml [{group}.{key}] is malformed")
    if kind.value == "quantity" and not kind.unit:
        raise ValueError(f"fhir_observation_codes.toml [{group}.{key}] needs a unit")
    return kind


@cache
def observation_kinds() -> dict[str, dict[str, ObservationKind]]:
    """group -> key -> how to code it (``observation_kinds()["vital"]["hr"]``)."""
    data = _load("fhir_observation_codes.toml")
    return {
        group: {key: _kind(group, key, row) for key, row in data.get(group, {}).items()} for group in GROUPS
    }
