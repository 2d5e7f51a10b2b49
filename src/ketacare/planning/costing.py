"""Cost estimate of a plan from the clinic's price list, with superbill codes: a pure function,
so the public front door can ask ``planning.setup`` for estimates too."""

from __future__ import annotations

from dataclasses import dataclass

from ketacare.knowledge.billing import billing_codes, billing_cutoffs


@dataclass(frozen=True)
class PriceList:
    consultation_usd: float
    drug_usd_per_mg: float
    premedication_usd_per_session: float
    session_bands: tuple[tuple[int, float], ...]  # (upper bound in minutes, fee)


@dataclass(frozen=True)
class EstimateInput:
    route: str
    session_minutes: tuple[int, ...]
    session_mg: tuple[float | None, ...]
    premedication: bool
    include_consultation: bool = True


@dataclass(frozen=True)
class Line:
    label: str
    quantity: float
    unit_usd: float

    @property
    def total_usd(self) -> float:
        return round(self.quantity * self.unit_usd, 2)


@dataclass(frozen=True)
class CodeLine:
    code: str
    units: int
    label: str
    rule: str
    source: str
    tag: str


@dataclass(frozen=True)
class Estimate:
    lines: tuple[Line, ...]
    codes: tuple[CodeLine, ...]

    @property
    def total_usd(self) -> float:
        return round(sum(line.total_usd for line in self.lines), 2)


def session_fee(prices: PriceList, minutes: int) -> float:
    """The first duration band the session fits in; the longest band covers anything longer."""
    for upper, fee in sorted(prices.session_bands):
        if minutes <= upper:
            return fee
    return sorted(prices.session_bands)[-1][1]


MINUTES_PER_HOUR = 60


def units_96366(total_minutes: int) -> int:
    """Additional hours: one unit once more than the grace (30 min, knowledge: billing cutoffs)
    beyond the prior hour (91-150 min total = 1, 151-210 = 2)."""
    cut = billing_cutoffs()
    first_unit_from = cut.initial_hour_min + cut.add_on_grace_min  # 90: a unit from 91 minutes
    if total_minutes <= first_unit_from:
        return 0
    return (total_minutes - first_unit_from - 1) // MINUTES_PER_HOUR + 1


def session_codes(route: str, minutes: int, dose_mg: float | None) -> list[tuple[str, int]]:
    cut = billing_cutoffs()
    if route == "iv_infusion":
        if minutes <= cut.push_max_min:
            return [("96374", 1)]
        extra = units_96366(minutes)
        return [("96365", 1)] + ([("96366", extra)] if extra else [])
    if route == "iv_bolus":
        return [("96374", 1)]
    if route == "im":
        return [("96372", 1)]
    if route == "esketamine_nasal":
        if dose_mg is None:
            return []  # an unknown dose picks neither code (never counted as 0 mg)
        return [("G2082", 1)] if dose_mg <= cut.esketamine_low_max_mg else [("G2083", 1)]
    return []


def estimate(prices: PriceList, plan: EstimateInput) -> Estimate:
    lines: list[Line] = []
    if plan.include_consultation:
        lines.append(Line("Consultation", 1, prices.consultation_usd))
    by_fee: dict[float, int] = {}
    for minutes in plan.session_minutes:
        fee = session_fee(prices, minutes)
        by_fee[fee] = by_fee.get(fee, 0) + 1
    for fee, count in sorted(by_fee.items()):
        lines.append(Line("Session fee", count, fee))
    total_mg = sum(mg for mg in plan.session_mg if mg is not None)
    if total_mg:
        lines.append(Line("Ketamine (mg)", round(total_mg, 1), prices.drug_usd_per_mg))
    if plan.premedication and plan.session_minutes:
        lines.append(Line("Premedication", len(plan.session_minutes), prices.premedication_usd_per_session))
    known = billing_codes()
    units: dict[str, int] = {}
    for minutes, mg in zip(plan.session_minutes, plan.session_mg, strict=True):
        for code, n in session_codes(plan.route, minutes, mg):
            units[code] = units.get(code, 0) + n
    codes = tuple(
        CodeLine(
            code, n, known[code].label, known[code].rule, known[code].sourced.source, known[code].sourced.tag
        )
        for code, n in units.items()
    )
    return Estimate(tuple(lines), codes)
