"""Repeat-treatment rules: what counts as a documented response, when a maintenance booster may
be planned, and when the next series is blocked. Pure functions over assessments."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ketacare.knowledge.dose_limits import response_criteria


@dataclass(frozen=True)
class Assessment:
    """A prescriber-documented response to one series (outcome questionnaires come later)."""

    series_id: int
    assessed_on: dt.date
    baseline_nrs: float
    followup_nrs: float
    pgic: int | None  # NINDS orientation: 1 = very much improved ... 7 = very much worse
    relief_days: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    source: str
    tag: str


def responded(a: Assessment) -> bool:
    """At least 30% or 2 points NRS reduction, or PGIC much / very much improved,
    lasting at least 3 weeks."""
    c = response_criteria()
    drop = a.baseline_nrs - a.followup_nrs
    pct = 100.0 * drop / a.baseline_nrs if a.baseline_nrs > 0 else 0.0
    nrs_ok = pct >= c.nrs_reduction_pct - 1e-9 or drop >= c.nrs_reduction_points - 1e-9
    pgic_ok = a.pgic is not None and a.pgic <= c.pgic_responder_max
    return (nrs_ok or pgic_ok) and a.relief_days >= c.min_relief_days


def _latest_per_series(assessments: list[Assessment]) -> list[Assessment]:
    latest: dict[int, Assessment] = {}
    for a in sorted(assessments, key=lambda a: a.assessed_on):
        latest[a.series_id] = a
    return sorted(latest.values(), key=lambda a: a.assessed_on)


def booster_allowed(assessments: list[Assessment]) -> Verdict:
    c = response_criteria()
    src = f"{c.nrs.source}; {c.pgic.source}; {c.min_relief.source}"
    per_series = _latest_per_series(assessments)
    if not per_series:
        return Verdict(False, "No documented response to a series yet: boosters need one.", src, "design")
    last = per_series[-1]
    if responded(last):
        return Verdict(True, f"Documented response on {last.assessed_on.isoformat()}.", src, "design")
    return Verdict(
        False,
        f"The last series did not meet the response criterion (>= {c.nrs_reduction_pct:g}% or "
        f"{c.nrs_reduction_points:g} points NRS, or PGIC much/very much improved, lasting >= "
        f"{c.min_relief_days} days).",
        src,
        "design",
    )


def next_series_allowed(assessments: list[Assessment]) -> Verdict:
    c = response_criteria()
    per_series = _latest_per_series(assessments)
    recent = per_series[-c.failed_series_block :]
    if len(recent) >= c.failed_series_block and not any(responded(a) for a in recent):
        return Verdict(
            False,
            f"The last {c.failed_series_block} series failed: the next series needs a written override.",
            c.failed_series.source,
            c.failed_series.tag,
        )
    return Verdict(True, "", c.failed_series.source, c.failed_series.tag)
