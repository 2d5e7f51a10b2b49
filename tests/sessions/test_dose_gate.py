"""Every ketamine administration entry is checked against the hard limits and the absolute
ceilings (refused, no override), and against the plan (a prescriber's written override), over
the API and on the page (issue 14 item 1). Sources: ASRA/AAPM/ASA 2018 (infusion 0.5-2 mg/kg/h
outside ICU, bolus 0.35 mg/kg); ceilings are design defaults (dose_limits.toml)."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.knowledge.protocols import builtin_protocols
from ketacare.planning.clinical_defaults import knowledge_defaults
from ketacare.planning.dosing import plan_allowance
from ketacare.sessions import rules
from ketacare.sessions.models import Administration
from tests.sessions.conftest import prechecked

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
LIB = {p.key: p for p in builtin_protocols()}


def ctx(
    key: str = "outpatient_series", weight: float = 70.0, others: float = 0.0, age: int = 45
) -> rules.DoseContext:
    p = LIB[key]
    return rules.DoseContext(
        route=p.route,
        drug="esketamine" if p.route == "esketamine_nasal" else "ketamine",
        weight_kg=weight,
        age_years=age,
        planned_duration_min=p.duration_min,
        allowance=plan_allowance(p, p.dose_default, p.duration_min, weight),
        other_sessions_today_mg=others,
        clinic=knowledge_defaults(),
    )


def start(rate: float) -> rules.DoseEntry:
    return rules.DoseEntry("start", T0, rate, None)


# (protocol, entry, given so far, other sessions today mg, words in the refusal)
REFUSED = [
    ("single_day_4h", start(700.0), [], 0.0, "10 mg/kg/h"),  # the issue: 10 mg/kg/h at 70 kg
    ("outpatient_series", start(141.0), [], 0.0, "above 2 mg/kg/h"),
    ("outpatient_series", rules.DoseEntry("bolus", T0, None, 30.0), [], 0.0, "0.35 mg/kg"),
    ("im_injection", rules.DoseEntry("dose", T0, None, 25.0), [], 0.0, "0.35 mg/kg"),
    (
        "esketamine_rems",
        rules.DoseEntry("dose", T0, None, 56.0),
        [rules.Given("dose", "esketamine", "esketamine_nasal", T0, None, 56.0)],
        0.0,
        "84 mg",
    ),
    # Per session: 2 mg/kg/h for 4 h = 560 mg at 70 kg, within 8 mg/kg; a 20 mg bolus passes it.
    (
        "outpatient_series",
        rules.DoseEntry("bolus", T0 + dt.timedelta(minutes=1), None, 20.0),
        [rules.Given("start", "ketamine", "iv_infusion", T0, 140.0, None)],
        0.0,
        "above the ceiling of 8 mg/kg",
    ),
    # Per day across sessions: 500 mg this morning + 28 mg/h for 4 h here = 612 mg = 8.74 mg/kg.
    ("outpatient_series", start(28.0), [], 500.0, "with 500 mg in the patient's other sessions"),
    ("outpatient_series", start(20.0), [], 0.0, "adults"),  # age 17 via the context below
]


@pytest.mark.parametrize(("key", "entry", "given", "others", "words"), REFUSED)
def test_hard_limits_and_ceilings_refuse_with_the_numbers(key, entry, given, others, words) -> None:  # type: ignore[no-untyped-def]
    c = ctx(key, others=others, age=17 if words == "adults" else 45)
    check = rules.check_dose_entry(entry, given, c)
    assert check.refused, check
    assert words in " ".join(check.refused.values())


def test_above_the_plan_within_the_limits_needs_an_override() -> None:
    check = rules.check_dose_entry(start(70.0), [], ctx())  # 1 mg/kg/h: above the protocol's 0.35
    assert not check.refused and "above the plan's 0.35 mg/kg/h" in check.needs_override[0]
    assert rules.check_dose_entry(start(24.5), [], ctx()).needs_override == []


def test_mg_between_clips_two_sessions_to_the_day() -> None:
    morning = [
        rules.Given("start", "ketamine", "iv_infusion", T0, 60.0, None),
        rules.Given("stop", "ketamine", "iv_infusion", T0 + dt.timedelta(hours=2), None, None),
        rules.Given("bolus", "ketamine", "iv_infusion", T0 + dt.timedelta(hours=1), None, 10.0),
    ]
    assert rules.mg_between(morning, T0, T0 + dt.timedelta(hours=24)) == 130.0
    assert rules.mg_between(morning, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=24)) == 70.0


URL = "/api/v1/sessions/{}/administrations"


def test_outpatient_10_mg_per_kg_h_is_refused_over_the_api(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)  # 80 kg
    body = {"kind": "start", "rate_mg_per_h": 800, "lot": "L1", "override_reason": "a few words of reason"}
    for who in (nurse, as_role("prescriber")):
        r = who.api("POST", URL.format(sid), json=body)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert "10 mg/kg/h" in r.text and "ASRA/AAPM/ASA" in r.text
    assert db.query(Administration).filter_by(session_id=sid).count() == 0


def test_nurse_cannot_override_and_prescribers_override_is_recorded_and_shown(
    as_role, world, db, booked
) -> None:  # type: ignore[no-untyped-def]
    nurse, dr = as_role("nurse"), as_role("prescriber")
    sid = prechecked(nurse, world, booked)
    body = {"kind": "start", "rate_mg_per_h": 80, "lot": "L1"}  # 1 mg/kg/h: above the plan
    refused = nurse.api("POST", URL.format(sid), json={**body, "override_reason": "pain not controlled"})
    assert refused.status_code == 422 and "Only a prescriber" in refused.text
    short = dr.api("POST", URL.format(sid), json={**body, "override_reason": "pain"})
    assert short.status_code == 422 and "Write the clinical reason" in short.text
    ok = dr.api("POST", URL.format(sid), json={**body, "override_reason": "Refractory CRPS flare, reviewed"})
    assert ok.status_code == 201, ok.text
    row = db.query(Administration).filter_by(session_id=sid, kind="start").one()
    assert row.override_reason == "Refractory CRPS flare, reviewed"
    assert row.override_by_id == world.users["prescriber"].id
    assert "Dose override by" in nurse.get(f"/sessions/{sid}").text
    report = dr.get(f"/sessions/{sid}/report")
    assert "Refractory CRPS flare, reviewed" in report.text
    pdf = dr.get(f"/sessions/{sid}/report.pdf")
    assert pdf.status_code == 200
    registry = as_role("admin").get("/registry")
    assert registry.status_code == 200 and "Sessions with a dose entry above the plan" in registry.text
    assert "<strong>1</strong>" in registry.text.split("dose-overrides")[1][:600]


def test_refusal_is_shown_on_the_page_not_a_bare_409(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]

    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    page = nurse.post(
        f"/sessions/{sid}/administrations",
        {"kind": "start", "drug": "ketamine", "rate_mg_per_h": "800", "lot": "L1"},
    )
    assert page.status_code == 422
    assert "10 mg/kg/h" in page.text and "No override" in page.text
