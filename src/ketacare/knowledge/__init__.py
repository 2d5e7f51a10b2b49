"""Sourced clinical facts as data files, with a typed loader. Every row names its source and tag.

Tags: V = seen in the source; V* = seen only on a weak source; M = from memory; design = a
suggested default, not a fact. [M] and design values are shown as clinic-editable defaults.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
ICD10_CM_PATTERN = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")


@dataclass(frozen=True)
class Sourced:
    source: str
    tag: str


@dataclass(frozen=True)
class ConditionCode:
    code: str
    display: str


@dataclass(frozen=True)
class PainCondition:
    key: str
    name: str
    evidence_grade: str
    evidence_text: str
    grade: Sourced
    codes: tuple[ConditionCode, ...]
    codes_sourced: Sourced
    snomed: str | None
    snomed_tag: str | None


def _load(name: str) -> dict[str, Any]:
    with (DATA_DIR / name).open("rb") as handle:
        return tomllib.load(handle)


@cache
def pain_conditions() -> tuple[PainCondition, ...]:
    rows = _load("conditions.toml")["condition"]
    return tuple(
        PainCondition(
            key=row["key"],
            name=row["name"],
            evidence_grade=row["evidence_grade"],
            evidence_text=row["evidence_text"],
            grade=Sourced(row["grade_source"], row["grade_tag"]),
            codes=tuple(ConditionCode(c["code"], c["display"]) for c in row["codes"]),
            codes_sourced=Sourced(row["codes_source"], row["codes_tag"]),
            snomed=row.get("snomed"),
            snomed_tag=row.get("snomed_tag"),
        )
        for row in rows
    )


@cache
def condition_by_code() -> dict[str, tuple[PainCondition, ConditionCode]]:
    return {code.code: (cond, code) for cond in pain_conditions() for code in cond.codes}


def is_icd10_cm(code: str) -> bool:
    return bool(ICD10_CM_PATTERN.match(code))


@cache
def demo_mix() -> dict[str, Any]:
    return _load("demo_mix.toml")
