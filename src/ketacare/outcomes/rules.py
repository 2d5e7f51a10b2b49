"""Pure outcome rules: answer checking and scoring, the follow-up schedule, and the outcome
definitions (responder, PGIC improvement, duration of relief). No I/O, no clock.

Every threshold comes from ``knowledge/data/outcomes.toml`` with its source; the definitions
are in this one module so that the patient chart, the registry and the export agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ketacare.knowledge.outcomes import Instrument, OutcomeRules, Schedule, instruments, outcome_rules

YES, NO = 1, 0


def field_name(instrument: str, item: str) -> str:
    return f"{instrument}.{item}"


def available(bpi_licensed: bool) -> list[Instrument]:
    """The instruments a clinic may send; the BPI only where it records a licence."""
    return [i for i in instruments().values() if bpi_licensed or not i.licensed]


def check_answers(
    keys: Sequence[str], form: Mapping[str, str], *, complete: bool
) -> tuple[dict[str, int], dict[str, str]]:
    """Answers by field name (``nrs.now``) as integers, and the errors by field.

    A draft (``complete=False``) may leave items blank; a submission may not. A value outside
    the instrument's scale is an error either way.
    """
    catalogue = instruments()
    values: dict[str, int] = {}
    errors: dict[str, str] = {}
    for key in keys:
        inst = catalogue[key]
        for item, _text in inst.items:
            name = field_name(key, item)
            raw = (form.get(name) or "").strip()
            if not raw:
                if complete:
                    errors[name] = "Please answer this question."
                continue
            try:
                value = int(raw)
            except ValueError:
                errors[name] = f"Choose a whole number from {inst.low} to {inst.high}."
                continue
            if not inst.low <= value <= inst.high:
                errors[name] = f"Choose a whole number from {inst.low} to {inst.high}."
                continue
            values[name] = value
    return values, errors


def score(key: str, values: Mapping[str, int]) -> float | None:
    """The instrument's score from its items (``None`` if an item is missing).

    NRS: the 24-hour average item; PEG: mean of 3; PGIC: the item; bladder screen: number of
    symptoms (positive when > 0); BPI-SF: severity = mean of 4 (interference: see ``bpi_interference``).
    """
    inst = instruments()[key]
    got = [values.get(field_name(key, item)) for item, _ in inst.items]
    if key == "nrs":
        v = values.get(field_name(key, str(inst.raw["score_item"])))
        return None if v is None else float(v)
    if any(v is None for v in got):
        return None
    numbers = [float(v) for v in got if v is not None]
    if key in ("peg",):
        return round(sum(numbers) / len(numbers), 2)
    if key == "bpi_sf":
        return _mean_of(values, key, [str(i) for i in inst.raw["severity_items"]])
    return float(sum(numbers))


def bpi_interference(values: Mapping[str, int]) -> float | None:
    inst = instruments()["bpi_sf"]
    return _mean_of(values, "bpi_sf", [str(i) for i in inst.raw["interference_items"]])


def _mean_of(values: Mapping[str, int], key: str, items: list[str]) -> float | None:
    got = [values.get(field_name(key, i)) for i in items]
    if any(v is None for v in got):
        return None
    return round(sum(float(v) for v in got if v is not None) / len(got), 2)


# --- the schedule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    timepoint: str
    days: int
    instruments: tuple[str, ...]


def follow_up_points(schedule: Schedule) -> list[Due]:
    """Day 1, weeks ... then monthly, as days after the end of a series."""
    points = [Due(t.key, t.days, t.instruments) for t in schedule.timepoints]
    last = max((t.days for t in schedule.timepoints), default=0)
    month = 1
    day = schedule.monthly_every_days
    while day <= schedule.monthly_until_days:
        if day > last:
            points.append(Due(f"month_{month}", day, schedule.monthly_instruments))
        month += 1
        day += schedule.monthly_every_days
    return points


# --- outcome definitions --------------------------------------------------------------------------


def reduction_pct(baseline: float, value: float) -> float | None:
    """Percentage fall from baseline (positive = better); undefined at a baseline of 0."""
    if baseline <= 0:
        return None
    return (baseline - value) / baseline * 100.0


@dataclass(frozen=True)
class Response:
    change_points: float  # value - baseline (negative = better)
    reduction_pct: float | None
    responder_30: bool
    responder_50: bool
    responder_2pt: bool


def response(baseline: float, value: float, rules: OutcomeRules | None = None) -> Response:
    """IMMPACT responder status of one follow-up NRS against baseline (clinical-facts 4.2)."""
    r = rules or outcome_rules()
    pct = reduction_pct(baseline, value)
    return Response(
        change_points=value - baseline,
        reduction_pct=pct,
        responder_30=pct is not None and pct >= r.moderate_pct,
        responder_50=pct is not None and pct >= r.substantial_pct,
        responder_2pt=(baseline - value) >= r.moderate_points,
    )


def pgic_improved(answer: int, rules: OutcomeRules | None = None) -> bool:
    """PGIC "much" or "very much improved" (1-7 orientation, 1 = very much improved)."""
    return answer in (rules or outcome_rules()).pgic_improved


@dataclass(frozen=True)
class Relief:
    """Duration of relief of one series. Follow-ups are days apart, so a loss of response is
    known only to lie in an interval: after ``low`` (the last follow-up still in response) and
    by ``days`` (the follow-up that found it; ``lost`` true). Without a loss, ``days`` = ``low``
    = the last contact (``lost`` false: censored there)."""

    days: float
    lost: bool
    low: float | None = None

    @property
    def interval(self) -> tuple[float, float]:
        """(lower, upper] of the loss for an interval-censored estimator (upper infinite: censored)."""
        low = self.days if self.low is None else self.low
        return (low, self.days) if self.lost else (self.days, float("inf"))


def duration_of_relief(
    series_end: dt.date,
    baseline: float,
    follow_ups: Iterable[tuple[dt.date, float]],
    censor_on: dt.date | None = None,
    rules: OutcomeRules | None = None,
) -> Relief | None:
    """Time from the end of a series to loss of response (``None``: the series never responded).

    ``follow_ups``: the series' own follow-up scores (never a later series' baseline). A response
    is a follow-up within the response window meeting the 30% criterion; loss is the first of
    ``consecutive_losses`` follow-ups in a row below it. Follow-ups on or after ``censor_on`` (the
    start of the next series, booster or not) are not the series' any more; without a loss the
    series is censored at its last contact (the last follow-up before then), never at the next
    series' start (returning for treatment says relief may be waning: informative, handled by
    the registry's sensitivity estimate).
    """
    r = rules or outcome_rules()
    points = sorted((d, v) for d, v in follow_ups if d > series_end and (censor_on is None or d < censor_on))
    window_end = series_end + dt.timedelta(days=r.response_window_days)
    early = [v for d, v in points if d <= window_end]
    if not any(response(baseline, v, r).responder_30 for v in early):
        return None
    run_start: dt.date | None = None
    run = 0
    responded = False
    for day, value in points:
        if response(baseline, value, r).responder_30:
            responded, run, run_start = True, 0, None
            continue
        if not responded:
            continue
        run += 1
        run_start = run_start or day
        if run >= r.consecutive_losses:
            # the last day before the loss was found (a same-day answer does not bound it)
            before = [d for d, _ in points if d < run_start]
            low = float(((before[-1] if before else series_end) - series_end).days)
            return Relief(float((run_start - series_end).days), True, low)
    last = float((points[-1][0] - series_end).days)
    return Relief(last, False, last)
