"""Long-term safety rules, pure: the liver hold at 3 x ULN, the bladder screen, repeated
exposure and when a liver test or bladder screen is due."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.safety import monitoring as m

TODAY = dt.date(2026, 6, 1)
INTERVALS = m.resolve_intervals({})


def panel(alt: float = 30, ast: float = 30, **kw: object) -> m.LiverPanel:
    return m.LiverPanel(alt, 40.0, ast, 40.0, **kw)  # type: ignore[arg-type]


def test_normal_liver_tests() -> None:
    assert m.judge_liver(panel()) == m.Judgement(m.NORMAL, ())


@pytest.mark.parametrize(("alt", "ast"), [(120, 30), (30, 120), (400, 400)])
def test_alt_or_ast_at_three_times_the_upper_limit_is_a_hold(alt: float, ast: float) -> None:
    j = m.judge_liver(panel(alt, ast))
    assert j.outcome == m.HOLD and j.holds
    assert all("Noppers 2011" in f.source and f.tag == "V" for f in j.holds)


def test_below_three_times_is_raised_not_held() -> None:
    j = m.judge_liver(panel(116, 50))  # 2.9 x and 1.25 x
    assert j.outcome == m.RAISED and not j.holds
    assert "2.9 x the upper limit" in j.findings[0].message


def test_alp_and_ggt_are_shown_but_do_not_hold() -> None:
    j = m.judge_liver(panel(alp_u_per_l=500, alp_uln_u_per_l=120, ggt_u_per_l=200, ggt_uln_u_per_l=50))
    assert j.outcome == m.RAISED and {f.key for f in j.findings} == {"alp", "ggt"}


def test_liver_symptoms_hold_whatever_the_numbers() -> None:
    j = m.judge_liver(panel(liver_symptoms=True))
    assert j.outcome == m.HOLD and j.holds[0].key == "symptoms" and j.holds[0].tag == "design"


def test_any_lower_urinary_tract_symptom_is_a_positive_screen() -> None:
    all_no = {k: "no" for k in ("frequency", "urgency", "dysuria", "hematuria", "suprapubic_pain")}
    assert m.judge_bladder(all_no).outcome == m.NORMAL
    j = m.judge_bladder({**all_no, "hematuria": "yes"})
    assert (
        j.outcome == m.HOLD
        and "blood in the urine" in j.holds[0].message
        and "urinalysis" in j.holds[0].message
    )
    assert m.unanswered({"frequency": "yes"}) == ["urgency", "dysuria", "hematuria", "suprapubic_pain"]


def session(days_ago: int, series: int = 1, mg: float = 100.0) -> m.Exposure:
    return m.Exposure(m.SESSION, TODAY - dt.timedelta(days=days_ago), "iv_infusion", mg, series=series)


def supply(days_ago: int, days: int = 30, route: str = "sublingual", mg: float = 500.0) -> m.Exposure:
    start = TODAY - dt.timedelta(days=days_ago)
    return m.Exposure(m.PRESCRIPTION, start, route, mg, until=start + dt.timedelta(days=days))


def test_a_single_session_is_not_repeated_exposure() -> None:
    assert m.due_checks([session(5)], None, None, INTERVALS, TODAY) == []


def test_repeated_sessions_make_baseline_checks_due_from_the_second_session() -> None:
    due = {d.kind: d for d in m.due_checks([session(10), session(9)], None, None, INTERVALS, TODAY)}
    assert set(due) == {m.LFT, m.BLADDER}
    assert due[m.LFT].due_on == TODAY - dt.timedelta(days=9) and due[m.LFT].overdue
    assert "ASRA-2018" in due[m.LFT].source
    assert due[m.BLADDER].tag == "design"


def test_a_take_home_prescription_is_repeated_exposure_but_topical_is_not() -> None:
    assert m.due_checks([supply(3)], None, None, INTERVALS, TODAY)
    assert m.due_checks([supply(3, route="topical")], None, None, INTERVALS, TODAY) == []


def test_checks_done_after_the_exposure_clear_what_was_due() -> None:
    exposures = [session(10), session(9)]
    due = m.due_checks(
        exposures, TODAY - dt.timedelta(days=8), TODAY - dt.timedelta(days=8), INTERVALS, TODAY
    )
    assert due == []


def test_a_session_after_the_last_bladder_screen_needs_a_new_screen() -> None:
    exposures = [session(20), session(19), session(2)]
    due = m.due_checks(
        exposures, TODAY - dt.timedelta(days=19), TODAY - dt.timedelta(days=19), INTERVALS, TODAY
    )
    assert [d.kind for d in due] == [m.BLADDER] and due[0].due_on == TODAY - dt.timedelta(days=2)


def test_a_new_series_needs_new_liver_tests() -> None:
    exposures = [session(60, series=1), session(59, series=1), session(3, series=2)]
    last = TODAY - dt.timedelta(days=59)
    due = {d.kind: d for d in m.due_checks(exposures, last, TODAY - dt.timedelta(days=3), INTERVALS, TODAY)}
    assert due[m.LFT].due_on == TODAY - dt.timedelta(days=3) and "new series" in due[m.LFT].reason


def test_periodic_checks_while_take_home_use_continues() -> None:
    exposures = [supply(100, days=180)]
    last = TODAY - dt.timedelta(days=95)
    due = {d.kind: d for d in m.due_checks(exposures, last, TODAY - dt.timedelta(days=10), INTERVALS, TODAY)}
    assert due[m.LFT].due_on == last + dt.timedelta(days=90) and due[m.LFT].overdue
    assert "90 days" in due[m.LFT].reason and due[m.LFT].tag == "design"
    assert due[m.BLADDER].due_on == TODAY + dt.timedelta(days=20) and not due[m.BLADDER].overdue


def test_periodic_checks_stop_when_exposure_stopped_before_they_fell_due() -> None:
    exposures = [supply(200, days=30)]
    last = TODAY - dt.timedelta(days=185)
    assert m.due_checks(exposures, last, last, INTERVALS, TODAY) == []


def test_the_intervals_are_clinic_editable() -> None:
    own = m.resolve_intervals({"lft_interval_days": 30, "repeated_sessions": 3})
    assert own.lft_days == 30 and own.repeated_sessions == 3 and own.bladder_days == 30
    assert own.note("lft_days") == "clinic's own setting" and "design default" in own.note("bladder_days")
    assert m.due_checks([session(10), session(9)], None, None, own, TODAY) == []


def test_cumulative_ketamine() -> None:
    c = m.cumulative([session(10, mg=100), session(9, mg=150), supply(5, mg=250), supply(5, route="topical")])
    assert (c.sessions, c.session_mg, c.prescriptions, c.prescription_mg, c.topical_prescriptions) == (
        2,
        250,
        1,
        250,
        1,
    )
    assert c.total_mg == 500
