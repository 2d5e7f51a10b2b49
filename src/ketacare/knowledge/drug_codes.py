"""Standard drug codes from ``data/drug_codes.toml`` (clinical-facts 7.3): the RxNorm ingredient
and SNOMED CT substance of the drugs KetaCare gives, each with its source and tag. A drug with
no verified code (esketamine) has a row without one, so callers send it as text."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class Code:
    code: str
    display: str
    sourced: Sourced


@dataclass(frozen=True)
class DrugCodes:
    key: str
    display: str
    rxnorm: Code | None  # the ingredient RxCUI
    snomed: Code | None  # the substance


@cache
def drug_codes() -> dict[str, DrugCodes]:
    found: dict[str, DrugCodes] = {}
    for row in _load("drug_codes.toml")["drug"]:
        display = str(row["display"])
        rxnorm = snomed = None
        if "rxnorm" in row:
            rxnorm = Code(str(row["rxnorm"]), display, Sourced(row["rxnorm_source"], row["rxnorm_tag"]))
        if "snomed" in row:
            snomed = Code(
                str(row["snomed"]),
                str(row["snomed_display"]),
                Sourced(row["snomed_source"], row["snomed_tag"]),
            )
        found[str(row["key"])] = DrugCodes(str(row["key"]), display, rxnorm, snomed)
    return found


def codes_for(drug: str) -> DrugCodes | None:
    """The codes of a drug by its KetaCare key (``ketamine``); ``None`` for any other drug."""
    return drug_codes().get(drug.strip().lower())
