"""Outcome-measurement knowledge from ``data/outcomes.toml``: the follow-up instruments and their
scoring, the default follow-up schedule, the IMMPACT responder thresholds, duration of relief
and the de-identification rules. The bladder screen's items are the safety screen's."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from ketacare.knowledge import Sourced, _load
from ketacare.knowledge.safety import safety_rules


@dataclass(frozen=True)
class Instrument:
    key: str
    label: str
    low: int
    high: int
    items: tuple[tuple[str, str], ...]
    choices: tuple[tuple[int, str], ...]  # empty: a 0-10 scale (or yes/no for the screen)
    anchors: tuple[str, ...]
    licensed: bool
    sourced: Sourced
    raw: dict[str, Any]


@dataclass(frozen=True)
class Timepoint:
    key: str
    days: int
    instruments: tuple[str, ...]


@dataclass(frozen=True)
class Schedule:
    timepoints: tuple[Timepoint, ...]
    baseline_instruments: tuple[str, ...]
    end_of_session_instruments: tuple[str, ...]
    monthly_instruments: tuple[str, ...]
    monthly_every_days: int
    monthly_until_days: int
    sourced: Sourced


@dataclass(frozen=True)
class OutcomeRules:
    moderate_pct: float
    substantial_pct: float
    moderate_points: float
    pct: Sourced
    points: Sourced
    pgic_improved: tuple[int, ...]
    pgic: Sourced
    responder_note: str
    consecutive_losses: int
    response_window_days: int
    relief: Sourced
    window: Sourced
    link_valid_days: int
    reminder_after_days: int
    links: Sourced
    small_cell: int
    small_cell_sourced: Sourced
    confidence: float
    confidence_sourced: Sourced
    max_age: int
    age: Sourced
    restricted_zip3: frozenset[str]
    zip: Sourced
    shift_max_days: int
    shift: Sourced


def _s(row: dict[str, Any], prefix: str = "") -> Sourced:
    return Sourced(str(row[f"{prefix}source"]), str(row[f"{prefix}tag"]))


@cache
def instruments() -> dict[str, Instrument]:
    data = _load("outcomes.toml")["instruments"]
    result: dict[str, Instrument] = {}
    for key, row in data.items():
        items = tuple((str(k), str(t)) for k, t in row.get("items", []))
        if key == "bladder":
            items = safety_rules().bladder_items
        result[key] = Instrument(
            key=key,
            label=str(row["label"]),
            low=int(row["low"]),
            high=int(row["high"]),
            items=items,
            choices=tuple((int(v), str(t)) for v, t in row.get("choices", [])),
            anchors=tuple(str(a) for a in row.get("anchors", [])),
            licensed=bool(row.get("licensed", False)),
            sourced=_s(row),
            raw=dict(row),
        )
    return result


@cache
def default_schedule() -> Schedule:
    d = _load("outcomes.toml")["schedule"]
    return Schedule(
        timepoints=tuple(Timepoint(str(k), int(days), tuple(ins)) for k, days, ins in d["timepoints"]),
        baseline_instruments=tuple(d["baseline_instruments"]),
        end_of_session_instruments=tuple(d["end_of_session_instruments"]),
        monthly_instruments=tuple(d["monthly_instruments"]),
        monthly_every_days=int(d["monthly_every_days"]),
        monthly_until_days=int(d["monthly_until_days"]),
        sourced=_s(d),
    )


@dataclass(frozen=True)
class Definitions:
    """How the registry turns questionnaires into figures (design defaults, outcomes.toml)."""

    baseline_lookback_days: int
    baseline: Sourced
    primary_day: int
    primary_window: tuple[int, int]
    primary: Sourced
    dropout_due_day: int
    dropout_from_day: int
    dropout: Sourced
    mme_before_lookback_days: int
    mme_after_window: tuple[int, int]
    mme: Sourced
    missing: Sourced
    clustering: Sourced


@cache
def registry_definitions() -> Definitions:
    d = _load("outcomes.toml")["definitions"]
    low, high = (int(v) for v in d["primary_window"])
    after_low, after_high = (int(v) for v in d["mme_after_window"])
    return Definitions(
        baseline_lookback_days=int(d["baseline_lookback_days"]),
        baseline=_s(d, "baseline_"),
        primary_day=int(d["primary_day"]),
        primary_window=(low, high),
        primary=_s(d, "primary_"),
        dropout_due_day=int(d["dropout_due_day"]),
        dropout_from_day=int(d["dropout_from_day"]),
        dropout=_s(d, "dropout_"),
        mme_before_lookback_days=int(d["mme_before_lookback_days"]),
        mme_after_window=(after_low, after_high),
        mme=_s(d, "mme_"),
        missing=_s(d, "missing_"),
        clustering=_s(d, "clustering_"),
    )


@cache
def outcome_rules() -> OutcomeRules:
    d = _load("outcomes.toml")
    r, rel, links, reg, de = d["responder"], d["relief"], d["links"], d["registry"], d["deidentification"]
    return OutcomeRules(
        moderate_pct=float(r["moderate_pct"]),
        substantial_pct=float(r["substantial_pct"]),
        moderate_points=float(r["moderate_points"]),
        pct=_s(r, "pct_"),
        points=_s(r, "points_"),
        pgic_improved=tuple(int(v) for v in r["pgic_improved"]),
        pgic=_s(r, "pgic_"),
        responder_note=str(r["note"]),
        consecutive_losses=int(rel["consecutive_losses"]),
        response_window_days=int(rel["response_window_days"]),
        relief=_s(rel),
        window=_s(rel, "window_"),
        link_valid_days=int(links["valid_days"]),
        reminder_after_days=int(links["reminder_after_days"]),
        links=_s(links),
        small_cell=int(reg["small_cell"]),
        small_cell_sourced=_s(reg, "small_cell_"),
        confidence=float(reg["confidence"]),
        confidence_sourced=_s(reg, "confidence_"),
        max_age=int(de["max_age"]),
        age=_s(de, "age_"),
        restricted_zip3=frozenset(str(z) for z in de["restricted_zip3"]),
        zip=_s(de, "zip_"),
        shift_max_days=int(de["shift_max_days"]),
        shift=_s(de, "shift_"),
    )
