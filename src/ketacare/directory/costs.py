"""What a protocol costs at a clinic, as a range: one session, the initial series and a year of
maintenance. Pure: the prices come from planning's price list via ``planning.setup``; the
sums are ``planning.costing.estimate``, passed in as ``price``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ketacare.knowledge.protocols import Protocol
from ketacare.planning.costing import Estimate, EstimateInput

# (design) the weight range used when the visitor gives none: the facts give no typical weight.
DEFAULT_WEIGHT_RANGE_KG = (60.0, 100.0)


def session_mg(p: Protocol, dose: float, weight_kg: float) -> float | None:
    """Drug per session, from the protocol's dose unit; None where it is not a systemic dose."""
    hours = p.duration_min / 60
    if p.dose_unit == "mg/kg/h":
        return dose * weight_kg * hours
    if p.dose_unit == "mg/kg":
        return dose * weight_kg
    if p.dose_unit == "mg/h":
        return dose * hours
    if p.dose_unit == "mg":
        return dose
    if p.dose_unit == "mg/kg/day":
        return dose * weight_kg
    return None


@dataclass(frozen=True)
class Span:
    label: str
    low: Estimate
    high: Estimate
    sessions: str

    @property
    def low_usd(self) -> float:
        return self.low.total_usd

    @property
    def high_usd(self) -> float:
        return self.high.total_usd


@dataclass(frozen=True)
class CostRange:
    protocol: Protocol
    weight_kg: tuple[float, float]
    spans: tuple[Span, ...]


def cost_range(
    p: Protocol,
    price: Callable[[EstimateInput], Estimate],
    boosters_per_year: tuple[int, int],
    weight_kg: float | None = None,
) -> CostRange:
    low_w, high_w = (weight_kg, weight_kg) if weight_kg else DEFAULT_WEIGHT_RANGE_KG
    premed = bool(p.premedication)

    def run(n: int, dose: float, weight: float, consult: bool) -> Estimate:
        mg = session_mg(p, dose, weight)
        return price(
            EstimateInput(
                route=p.route,
                session_minutes=(p.duration_min,) * n,
                session_mg=(None if mg is None else round(mg, 1),) * n,
                premedication=premed,
                include_consultation=consult,
            )
        )

    low_b, high_b = boosters_per_year
    spans = (
        Span(
            "One session (with the consultation)",
            run(1, p.dose_min, low_w, True),
            run(1, p.dose_max, high_w, True),
            "1",
        ),
        Span(
            "Initial series (with the consultation)",
            run(p.sessions_min, p.dose_min, low_w, True),
            run(p.sessions_max, p.dose_max, high_w, True),
            f"{p.sessions_min}" if p.sessions_min == p.sessions_max else f"{p.sessions_min}-{p.sessions_max}",
        ),
        Span(
            "A year of maintenance boosters",
            run(low_b, p.dose_min, low_w, False),
            run(high_b, p.dose_max, high_w, False),
            f"{low_b}-{high_b} a year (the clinic's own estimate)",
        ),
    )
    return CostRange(p, (low_w, high_w), spans)
