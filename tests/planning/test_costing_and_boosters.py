"""Cost estimate with superbill codes, and the booster / next-series rules (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.planning.boosters import Assessment, booster_allowed, next_series_allowed, responded
from ketacare.planning.costing import EstimateInput, PriceList, estimate, session_codes, units_96366

PRICES = PriceList(350.0, 0.5, 20.0, ((60, 600.0), (240, 1000.0)))


@pytest.mark.parametrize(
    ("minutes", "units"), [(60, 0), (90, 0), (91, 1), (150, 1), (151, 2), (210, 2), (240, 3)]
)
def test_96366_counting_rule(minutes: int, units: int) -> None:
    """codingmcw: one unit per additional hour once > 30 min beyond the prior hour (91-150 = 1)."""
    assert units_96366(minutes) == units


def test_codes_by_route() -> None:
    """96365 needs > 15 min (else 96374); 96372 for IM; G2082 <= 56 mg, G2083 > 56 mg."""
    assert session_codes("iv_infusion", 15, 10.0) == [("96374", 1)]
    assert session_codes("iv_infusion", 40, 40.0) == [("96365", 1)]
    assert session_codes("im", 0, 20.0) == [("96372", 1)]
    assert session_codes("esketamine_nasal", 120, 56.0) == [("G2082", 1)]
    assert session_codes("esketamine_nasal", 120, 84.0) == [("G2083", 1)]


def test_estimate_of_a_crps_series() -> None:
    e = estimate(PRICES, EstimateInput("iv_infusion", (240,) * 5, (64.0, 112.0, 112.0, 112.0, 112.0), True))
    assert e.total_usd == 350 + 5 * 1000 + 512 * 0.5 + 5 * 20
    assert {(c.code, c.units) for c in e.codes} == {("96365", 5), ("96366", 15)}
    assert all(c.source for c in e.codes)


def a(series: int, before: float, after: float, pgic: int | None = None, days: int = 30) -> Assessment:
    return Assessment(series, dt.date(2026, 1, series), before, after, pgic, days)


def test_response_definition() -> None:
    """IMMPACT: >= 30% or 2 points NRS, or PGIC much/very much improved; lasting >= 3 weeks (design)."""
    assert responded(a(1, 8, 5.6))  # 30%
    assert responded(a(1, 5, 3))  # 2 points
    assert not responded(a(1, 8, 6.5))  # 19%, 1.5 points
    assert responded(a(1, 8, 8, pgic=2))
    assert not responded(a(1, 8, 8, pgic=3))
    assert not responded(a(1, 8, 4, days=20))


def test_boosters_only_after_a_documented_response() -> None:
    assert not booster_allowed([]).allowed
    assert booster_allowed([a(1, 8, 4)]).allowed
    assert not booster_allowed([a(1, 8, 4), a(2, 8, 8)]).allowed


def test_next_series_blocked_after_two_failed_series() -> None:
    """Facts 1.9 / section 9 rule 10 (design): block after two failed series unless overridden."""
    assert next_series_allowed([a(1, 8, 8)]).allowed
    blocked = next_series_allowed([a(1, 8, 8), a(2, 8, 7.5)])
    assert not blocked.allowed and "2 series" in blocked.reason
    assert next_series_allowed([a(1, 8, 8), a(2, 8, 4)]).allowed
