"""Guideline dose limits, response criteria and planning defaults from ``data/dose_limits.toml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class DoseLimit:
    key: str
    value: float
    unit: str
    applies_to: tuple[str, ...]
    kind: str  # max, min or floor
    message: str
    sourced: Sourced
    min_duration_min: int | None = None
    hard: bool = False  # the source sets the limit: refused outright, no override


@dataclass(frozen=True)
class Ceiling:
    """(design) Absolute ceilings per session and per day for the protocol settings it covers;
    None where the row sets none. The values are the hard outer bounds: a clinic may only lower
    the day-visit ones (``planning.clinical_defaults``)."""

    key: str
    settings: tuple[str, ...]
    session_max_mg: float | None
    session_max_mg_per_kg: float | None
    day_max_mg: float | None
    day_max_mg_per_kg: float | None
    sourced: Sourced


@dataclass(frozen=True)
class AdultBounds:
    """(design) Who KetaCare doses: adults of a plausible weight."""

    min_age_years: int
    min_age: Sourced
    weight_min_kg: float
    weight_max_kg: float
    weight_outer_min_kg: float
    weight_outer_max_kg: float
    weight: Sourced
    height_outer_min_cm: float
    height_outer_max_cm: float
    height: Sourced


@dataclass(frozen=True)
class PlanningDefaults:
    weight_max_age_days: int
    weight_max_age_days_tag: str
    pump_increment_ml_per_h: float
    syringe_increment_ml: float
    increments_tag: str
    product_concentrations_mg_per_ml: tuple[float, ...]
    product_concentrations: Sourced
    iv_needs_dilution_mg_per_ml: float
    psychotomimetic_long_min: float
    population_size: int
    high_frequency_sessions: int


@dataclass(frozen=True)
class ResponseCriteria:
    nrs_reduction_pct: float
    nrs_reduction_points: float
    nrs: Sourced
    pgic_responder_max: int
    pgic: Sourced
    min_relief_days: int
    min_relief: Sourced
    failed_series_block: int
    failed_series: Sourced


@cache
def dose_limits() -> dict[str, DoseLimit]:
    rows = _load("dose_limits.toml")["limit"]
    return {
        row["key"]: DoseLimit(
            key=row["key"],
            value=float(row["value"]),
            unit=row["unit"],
            applies_to=tuple(row["applies_to"]),
            kind=row["kind"],
            message=row["message"],
            sourced=Sourced(row["source"], row["tag"]),
            min_duration_min=row.get("min_duration_min"),
            hard=bool(row.get("hard", False)),
        )
        for row in rows
    }


def _opt(row: dict[str, object], key: str) -> float | None:
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else None


@cache
def ceilings() -> tuple[Ceiling, ...]:
    return tuple(
        Ceiling(
            key=row["key"],
            settings=tuple(row["settings"]),
            session_max_mg=_opt(row, "session_max_mg"),
            session_max_mg_per_kg=_opt(row, "session_max_mg_per_kg"),
            day_max_mg=_opt(row, "day_max_mg"),
            day_max_mg_per_kg=_opt(row, "day_max_mg_per_kg"),
            sourced=Sourced(row["source"], row["tag"]),
        )
        for row in _load("dose_limits.toml")["ceiling"]
    )


def ceiling_for(setting: str) -> Ceiling:
    """The ceiling row covering a protocol setting; every setting has one (a test checks)."""
    for row in ceilings():
        if setting in row.settings:
            return row
    raise KeyError(setting)


@cache
def adult_bounds() -> AdultBounds:
    a = _load("dose_limits.toml")["adult"]
    return AdultBounds(
        min_age_years=int(a["min_age_years"]),
        min_age=Sourced(a["min_age_source"], a["min_age_tag"]),
        weight_min_kg=float(a["weight_min_kg"]),
        weight_max_kg=float(a["weight_max_kg"]),
        weight_outer_min_kg=float(a["weight_outer_min_kg"]),
        weight_outer_max_kg=float(a["weight_outer_max_kg"]),
        weight=Sourced(a["weight_source"], a["weight_tag"]),
        height_outer_min_cm=float(a["height_outer_min_cm"]),
        height_outer_max_cm=float(a["height_outer_max_cm"]),
        height=Sourced(a["height_source"], a["height_tag"]),
    )


@cache
def planning_defaults() -> PlanningDefaults:
    s = _load("dose_limits.toml")["settings"]
    return PlanningDefaults(
        weight_max_age_days=int(s["weight_max_age_days"]),
        weight_max_age_days_tag=s["weight_max_age_days_tag"],
        pump_increment_ml_per_h=float(s["pump_increment_ml_per_h"]),
        syringe_increment_ml=float(s["syringe_increment_ml"]),
        increments_tag=s["increments_tag"],
        product_concentrations_mg_per_ml=tuple(float(c) for c in s["product_concentrations_mg_per_ml"]),
        product_concentrations=Sourced(s["product_concentrations_source"], s["product_concentrations_tag"]),
        iv_needs_dilution_mg_per_ml=float(s["iv_needs_dilution_mg_per_ml"]),
        psychotomimetic_long_min=float(s["psychotomimetic_long_min"]),
        population_size=int(s["population_size"]),
        high_frequency_sessions=int(s["high_frequency_sessions"]),
    )


@cache
def response_criteria() -> ResponseCriteria:
    r = _load("dose_limits.toml")["response"]
    return ResponseCriteria(
        nrs_reduction_pct=float(r["nrs_reduction_pct"]),
        nrs_reduction_points=float(r["nrs_reduction_points"]),
        nrs=Sourced(r["nrs_source"], r["nrs_tag"]),
        pgic_responder_max=int(r["pgic_responder_max"]),
        pgic=Sourced(r["pgic_source"], r["pgic_tag"]),
        min_relief_days=int(r["min_relief_days"]),
        min_relief=Sourced(r["min_relief_days_source"], r["min_relief_days_tag"]),
        failed_series_block=int(r["failed_series_block"]),
        failed_series=Sourced(r["failed_series_block_source"], r["failed_series_block_tag"]),
    )


def override_reason_min_chars() -> int:
    """(design) How long a written override reason must be: a reason, not a tick box."""
    return int(_load("dose_limits.toml")["settings"]["override_reason_min_chars"])
