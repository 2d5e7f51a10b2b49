"""Scoring, the schedule and the outcome definitions, against hand-computed values."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.knowledge.outcomes import default_schedule, instruments, outcome_rules
from ketacare.outcomes import rules

D0 = dt.date(2026, 1, 1)


def _d(days: int) -> dt.date:
    return D0 + dt.timedelta(days=days)


def test_every_instrument_and_threshold_names_its_source() -> None:
    for inst in instruments().values():
        assert inst.sourced.source and inst.sourced.tag in ("V", "V*", "M", "design")
    r = outcome_rules()
    for s in (
        r.pct,
        r.points,
        r.pgic,
        r.relief,
        r.window,
        r.links,
        r.small_cell_sourced,
        r.age,
        r.zip,
        r.shift,
    ):
        assert s.source and s.tag
    assert (r.moderate_pct, r.substantial_pct, r.moderate_points) == (30.0, 50.0, 2.0)


def test_promis_is_not_offered_and_bpi_only_with_a_licence() -> None:
    assert "promis_pi" not in instruments()
    assert "bpi_sf" not in {i.key for i in rules.available(bpi_licensed=False)}
    assert "bpi_sf" in {i.key for i in rules.available(bpi_licensed=True)}


def test_scores() -> None:
    assert rules.score("nrs", {"nrs.now": 3, "nrs.average": 5, "nrs.worst": 8}) == 5.0
    assert rules.score("peg", {"peg.pain_average": 6, "peg.enjoyment": 4, "peg.general_activity": 5}) == 5.0
    assert rules.score("peg", {"peg.pain_average": 6, "peg.enjoyment": 4}) is None
    assert rules.score("pgic", {"pgic.global": 2}) == 2.0
    bladder = {f"bladder.{k}": 0 for k, _ in instruments()["bladder"].items}
    assert rules.score("bladder", bladder) == 0.0
    bladder["bladder.urgency"] = 1
    assert rules.score("bladder", bladder) == 1.0
    bpi = dict.fromkeys([f"bpi_sf.{k}" for k, _ in instruments()["bpi_sf"].items], 4)
    bpi.update({"bpi_sf.worst": 8, "bpi_sf.least": 2, "bpi_sf.average": 5, "bpi_sf.now": 5})
    assert rules.score("bpi_sf", bpi) == 5.0  # (8 + 2 + 5 + 5) / 4
    assert rules.bpi_interference(bpi) == 4.0


def test_check_answers_draft_and_submit() -> None:
    values, errors = rules.check_answers(["nrs"], {"nrs.now": "4"}, complete=False)
    assert values == {"nrs.now": 4} and not errors
    _, errors = rules.check_answers(["nrs"], {"nrs.now": "4"}, complete=True)
    assert set(errors) == {"nrs.average", "nrs.worst"}
    _, errors = rules.check_answers(["nrs"], {"nrs.now": "11"}, complete=False)
    assert "nrs.now" in errors
    _, errors = rules.check_answers(["pgic"], {"pgic.global": "0"}, complete=False)
    assert "pgic.global" in errors


def test_default_schedule_is_day1_weeks_then_monthly() -> None:
    points = rules.follow_up_points(default_schedule())
    days = [p.days for p in points]
    assert days[:6] == [1, 7, 14, 28, 56, 84]
    assert days[6:] == list(range(90, 366, 30))
    assert points[6].timepoint == "month_3"


@pytest.mark.parametrize(
    ("baseline", "value", "r30", "r50", "r2"),
    [
        (8, 5.6, True, False, True),  # exactly 30%
        (8, 4, True, True, True),  # 50%
        (8, 5.7, False, False, True),  # 28.75%, 2.3 points
        (3, 2, True, False, False),  # 33%, 1 point
        (0, 0, False, False, False),  # no baseline pain: % undefined
    ],
)
def test_immpact_responder(baseline: float, value: float, r30: bool, r50: bool, r2: bool) -> None:
    r = rules.response(baseline, value)
    assert (r.responder_30, r.responder_50, r.responder_2pt) == (r30, r50, r2)


def test_pgic_much_or_very_much_improved() -> None:
    assert [rules.pgic_improved(v) for v in range(1, 8)] == [True, True, False, False, False, False, False]


def test_relief_lost_at_first_of_two_consecutive_failures() -> None:
    pts = [(_d(7), 3), (_d(14), 3), (_d(28), 6), (_d(35), 4), (_d(56), 6), (_d(84), 7)]
    relief = rules.duration_of_relief(D0, 8, pts)
    # day 28 fails but day 35 responds again; loss = day 56 (56 and 84 both fail), known only to
    # lie after day 35, the last follow-up in response
    assert relief == rules.Relief(56.0, True, 35.0)
    assert relief is not None and relief.interval == (35.0, 56.0)


def test_relief_censored_at_last_contact_never_at_the_next_series() -> None:
    pts = [(_d(7), 3), (_d(28), 3), (_d(56), 7)]
    assert rules.duration_of_relief(D0, 8, pts) == rules.Relief(56.0, False, 56.0)
    # a booster starting on day 60: the day-84 answer is not this series'; censored at day 56,
    # the last contact, not at day 60
    relief = rules.duration_of_relief(D0, 8, [*pts, (_d(84), 7)], censor_on=_d(60))
    assert relief == rules.Relief(56.0, False, 56.0)
    assert relief is not None and relief.interval == (56.0, float("inf"))


def test_no_relief_without_early_response() -> None:
    assert rules.duration_of_relief(D0, 8, [(_d(7), 7), (_d(56), 2)]) is None
