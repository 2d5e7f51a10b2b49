"""Plans end to end through the API and the pages: eligibility gate, dose limits with override,
PK check, schedule without double-booking, care plan, responses, consent; bad input writes nothing."""

from __future__ import annotations

import datetime as dt
import itertools

from ketacare.planning.models import Consent, PlanSession, TreatmentPlan
from tests.helpers import audit_entries, clinic_today, count, is_problem
from tests.planning.conftest import TOMORROW, crps_plan, make_ready


def test_crps_plan_with_pk_cost_schedule_and_consent(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    pid = world.patient_a.id
    make_ready(dr, pid)
    created = dr.api("POST", f"/api/v1/patients/{pid}/plans", json=crps_plan())
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["evidence_grade"] == "B" and plan["series_mg"] == 64.0 + 4 * 112.0
    assert [s["dose_mg"] for s in plan["sessions"]] == [64.0, 112.0, 112.0, 112.0, 112.0]
    assert plan["pk"]["available"] and len(plan["pk"]["sessions"]) == 2
    assert plan["pk"]["sessions"][1]["onset_min"] is not None
    assert {c["code"] for c in plan["estimate"]["codes"]} == {"96365", "96366"}
    assert any(f["code"] == "infusion_min" and f["severity"] == "warning" for f in plan["findings"])

    page = dr.get(f"/plans/{plan['id']}")
    assert page.status_code == 200
    assert 'class="chart"' in page.text and "/vendor/plotly.min.js" in page.text
    assert "analgesic band" in page.text and "Superbill codes" in page.text

    scheduled = dr.api("POST", f"/api/v1/plans/{plan['id']}/schedule").json()
    assert scheduled["status"] == "scheduled"
    assert all(s["chair"] == "Room 1 · Chair A" for s in scheduled["sessions"])
    assert count(db, PlanSession) == 5
    again = dr.api("POST", f"/api/v1/plans/{plan['id']}/schedule")
    assert is_problem(again, 422)
    calendar = dr.api("GET", "/api/v1/calendar", params={"start": TOMORROW}).json()
    assert len(calendar) == 5 and calendar[0]["patient"] == "Lovelace, Ada"

    item = dr.api(
        "POST",
        f"/api/v1/plans/{plan['id']}/care-items",
        json={"category": "physical_therapy", "description": "Graded motor imagery", "owner": "PT"},
    )
    assert item.status_code == 201
    nurse = as_role("nurse")
    done = nurse.api(
        "PATCH", f"/api/v1/plans/{plan['id']}/care-items/{item.json()['id']}", json={"status": "done"}
    )
    assert done.json()["status"] == "done"

    consent = dr.api("GET", f"/api/v1/plans/{plan['id']}/consent").json()
    assert not consent["signed"] and "off-label" in consent["text"] and "grade B" in consent["text"]
    patient = as_role("patient_a")
    wrong = patient.api(
        "POST",
        f"/api/v1/me/plans/{plan['id']}/consent/sign",
        json={"typed_name": "Someone Else", "signed_on": clinic_today().isoformat(), "agree": True},
    )
    assert is_problem(wrong, 422)
    signed = patient.api(
        "POST",
        f"/api/v1/me/plans/{plan['id']}/consent/sign",
        json={"typed_name": "Ada Lovelace", "signed_on": clinic_today().isoformat(), "agree": True},
    )
    assert signed.status_code == 200 and signed.json()["signature_sha256"]
    twice = patient.api(
        "POST",
        f"/api/v1/me/plans/{plan['id']}/consent/sign",
        json={"typed_name": "Ada Lovelace", "signed_on": clinic_today().isoformat(), "agree": True},
    )
    assert is_problem(twice, 409)
    assert audit_entries(db, "consent.sign") and audit_entries(db, "plan.schedule")
    assert patient.get(f"/my/plans/{plan['id']}/consent").status_code == 200
    assert as_role("patient_b").get(f"/my/plans/{plan['id']}/consent").status_code == 403


def test_second_patient_gets_another_slot_no_double_booking(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    for patient in (world.patient_a, world.patient_b):
        make_ready(dr, patient.id)
        plan = dr.api("POST", f"/api/v1/patients/{patient.id}/plans", json=crps_plan(sessions=5)).json()
        dr.api("POST", f"/api/v1/plans/{plan['id']}/schedule")
    rows = db.query(PlanSession).order_by(PlanSession.starts_at).all()
    assert len(rows) == 10
    for first, second in itertools.pairwise(rows):
        if first.chair_id == second.chair_id and first.starts_at.date() == second.starts_at.date():
            assert second.starts_at >= first.ends_at


def test_dose_above_protocol_limit_needs_a_recorded_override(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    pid = world.patient_a.id
    make_ready(dr, pid)
    refused = dr.api("POST", f"/api/v1/patients/{pid}/plans", json=crps_plan(dose=0.5))
    assert is_problem(refused, 422)
    assert refused.json()["errors"][0]["field"] == "dose_override_reason"
    assert count(db, TreatmentPlan) == 0
    ok = dr.api(
        "POST",
        f"/api/v1/patients/{pid}/plans",
        json=crps_plan(dose=0.5, dose_override_reason="Partial response at 0.35 in the last series"),
    )
    assert ok.status_code == 201
    (entry,) = audit_entries(db, "plan.dose_override")
    assert "protocol_max" in entry.detail and entry.patient_id == pid


def test_bad_plans_are_refused_and_nothing_is_saved(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    pid = world.patient_a.id
    url = f"/api/v1/patients/{pid}/plans"
    no_weight = dr.api("POST", url, json=crps_plan())
    assert is_problem(no_weight, 422)  # no screening, no weight yet
    make_ready(dr, pid)
    wrong_unit = dr.api("POST", url, json=crps_plan(dose_unit="mg/kg"))
    assert {e["field"] for e in wrong_unit.json()["errors"]} >= {"dose_unit"}
    unknown = dr.api("POST", url, json=crps_plan(protocol_key="nope"))
    assert unknown.json()["errors"][0]["field"] == "protocol_key"
    assert dr.api("POST", url, json=crps_plan()).status_code == 201
    overlap = dr.api("POST", url, json=crps_plan())
    assert any(e["field"] == "start_date" and "Overlaps" in e["message"] for e in overlap.json()["errors"])
    booster = dr.api("POST", url, json=crps_plan(purpose="booster", start_date="2099-01-01"))
    assert any(e["field"] == "purpose" for e in booster.json()["errors"])
    assert count(db, TreatmentPlan) == 1 and count(db, Consent) == 1


def test_hard_stop_patient_cannot_get_a_plan_page_shows_reason(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    pid = world.patient_b.id
    make_ready(dr, pid, pregnancy="yes")
    page = dr.post(
        f"/patients/{pid}/plans/new",
        {
            "protocol_key": "outpatient_series",
            "dose": "0.35",
            "dose_unit": "mg/kg/h",
            "sessions": "5",
            "start_date": TOMORROW,
            "preferred_time": "09:00",
            "concentration_mg_per_ml": "10",
        },
    )
    assert page.status_code == 422
    assert "Not eligible: hard stop" in page.text and "Pregnancy" in page.text
    assert 'value="0.35"' in page.text
    assert count(db, TreatmentPlan) == 0


def test_plan_form_page_creates_plan(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    pid = world.patient_a.id
    make_ready(dr, pid)
    form = dr.get(f"/patients/{pid}/plans/new?protocol=outpatient_series")
    assert form.status_code == 200 and "Eligible" in form.text
    done = dr.post(
        f"/patients/{pid}/plans/new",
        {
            "protocol_key": "outpatient_series",
            "dose": "0.35",
            "dose_unit": "mg/kg/h",
            "titration_start": "0.2",
            "sessions": "5",
            "start_date": TOMORROW,
            "preferred_time": "09:00",
            "concentration_mg_per_ml": "10",
            "premedication": "ondansetron",
            "purpose": "series",
        },
    )
    assert done.status_code == 200 and "Plan #" in done.text and "data-figure=" in done.text


def test_responses_gate_boosters_and_two_failures_block_a_series(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    pid = world.patient_a.id
    make_ready(dr, pid)
    url = f"/api/v1/patients/{pid}/plans"
    today = clinic_today()
    ids = []
    for n in range(2):
        plan = dr.api(
            "POST", url, json=crps_plan(start_date=(today + dt.timedelta(days=10 * n + 1)).isoformat())
        )
        ids.append(plan.json()["id"])
    # Assessments are dated after each series started; make them look past by moving the start.
    db.query(TreatmentPlan).update({TreatmentPlan.start_date: today - dt.timedelta(days=60)})
    db.commit()
    for plan_id in ids:
        r = dr.api(
            "POST",
            f"/api/v1/plans/{plan_id}/responses",
            json={"assessed_on": today.isoformat(), "baseline_nrs": 8, "followup_nrs": 7.5, "relief_days": 5},
        )
        assert r.status_code == 201
    start = (today + dt.timedelta(days=100)).isoformat()
    blocked = dr.api("POST", url, json=crps_plan(start_date=start))
    assert any(e["field"] == "series_override_reason" for e in blocked.json()["errors"])
    booster = dr.api("POST", url, json=crps_plan(purpose="booster", start_date=start))
    assert any(e["field"] == "purpose" for e in booster.json()["errors"])
    ok = dr.api(
        "POST", url, json=crps_plan(start_date=start, series_override_reason="New CRPS flare, agreed at MDT")
    )
    assert ok.status_code == 201
    assert audit_entries(db, "plan.series_override")


def test_another_clinics_plan_is_not_found_and_audited(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    make_ready(dr, world.patient_a.id)
    plan = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan()).json()
    outsider = as_role("outsider")
    assert outsider.api("GET", f"/api/v1/plans/{plan['id']}").status_code == 404
    assert outsider.get(f"/plans/{plan['id']}").status_code == 404
    assert outsider.api("GET", f"/api/v1/patients/{world.patient_a.id}/eligibility").status_code == 404
    denied = audit_entries(db, "plan.read", outcome="denied")
    assert denied and denied[0].detail == "plan of another clinic"
    assert (
        outsider.api("POST", f"/api/v1/patients/{world.other_patient.id}/plans", json=crps_plan()).status_code
        == 422
    )


def test_clinic_protocol_needs_a_source(as_role, world, db) -> None:
    dr = as_role("prescriber")
    body = {
        "key": "clinic_2h",
        "name": "Clinic 2-hour",
        "route": "iv_infusion",
        "dose_unit": "mg/kg/h",
        "dose_min": 0.2,
        "dose_max": 0.5,
        "dose_default": 0.3,
        "duration_min": 120,
        "sessions_min": 1,
        "sessions_max": 3,
        "interval_days": 1,
        "setting": "outpatient",
    }
    refused = dr.api("POST", "/api/v1/protocols", json=body)
    assert is_problem(refused, 422) and refused.json()["errors"][0]["field"] == "source"
    ok = dr.api(
        "POST", "/api/v1/protocols", json={**body, "source": "Clinic decision 2026-03", "tag": "design"}
    )
    assert ok.status_code == 201 and ok.json()["version"] == 1
    v2 = dr.api(
        "POST", "/api/v1/protocols", json={**body, "dose_max": 0.6, "source": "Clinic decision 2026-04"}
    )
    assert v2.json()["version"] == 2
    keys = {p["key"]: p for p in dr.api("GET", "/api/v1/protocols").json()}
    assert keys["clinic_2h"]["version"] == 2 and len(keys) == 12
    assert dr.get("/planning/protocols").status_code == 200


def test_admin_edits_prices_and_chairs(as_role, world, db) -> None:
    admin = as_role("admin")
    bad = admin.post(
        "/planning/prices",
        {
            "consultation_usd": "-1",
            "drug_usd_per_mg": "0.5",
            "premedication_usd_per_session": "0",
            "session_bands": "60=600",
        },
    )
    assert bad.status_code == 422 and 'value="-1"' in bad.text
    ok = admin.post(
        "/planning/prices",
        {
            "consultation_usd": "400",
            "drug_usd_per_mg": "0.5",
            "premedication_usd_per_session": "10",
            "session_bands": "60=500; 240=900",
        },
    )
    assert ok.status_code == 200
    assert admin.api("GET", "/api/v1/prices").json()["session_bands"] == [[60, 500.0], [240, 900.0]]
    assert admin.post("/planning/chairs", {"room": "R1", "name": "C1"}).status_code == 200
    assert as_role("prescriber").api("PUT", "/api/v1/prices", json={}).status_code == 403
