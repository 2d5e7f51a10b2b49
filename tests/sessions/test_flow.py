"""A whole session over the JSON API: check-in, pre-checks, infusion with a rate change, vitals
with an alarm, acknowledge and resolve, an adverse event, recovery, discharge, signatures."""

from __future__ import annotations

import datetime as dt

from ketacare.sessions.models import Administration, TreatmentSession
from tests.helpers import audit_entries
from tests.sessions.conftest import running


def test_whole_session(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    s = nurse.api("GET", f"/api/v1/sessions/{sid}").json()
    assert s["status"] == "running" and s["totals"]["infusion_running"]
    assert s["predicted_cp_ng_per_ml"] is not None

    high = nurse.api(
        "POST", f"/api/v1/sessions/{sid}/vitals", json={"readings": [{"kind": "sbp", "value": 185}]}
    )
    assert high.status_code == 201, high.text
    rules = {a["rule"] for a in high.json()["alarms"]}
    assert "sbp_high" in rules and "sbp_rise" in rules
    alarm_id = next(a["id"] for a in high.json()["alarms"] if a["rule"] == "sbp_high")
    # the prescriber was told
    notices = as_role("prescriber").api("GET", "/api/v1/notices").json()
    assert any("Systolic" in n["message"] for n in notices)

    lowered = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/administrations",
        json={"kind": "rate_change", "drug": "ketamine", "rate_mg_per_h": 14, "reason": "SBP 185"},
    )
    assert lowered.status_code == 201, lowered.text
    assert nurse.api("POST", f"/api/v1/alarms/{alarm_id}/resolve", json={}).status_code == 409  # ack first
    assert (
        nurse.api("POST", f"/api/v1/alarms/{alarm_id}/acknowledge", json={"note": "rate halved"}).status_code
        == 200
    )
    assert (
        nurse.api("POST", f"/api/v1/alarms/{alarm_id}/resolve", json={"note": "SBP 150"}).status_code == 200
    )
    for a in nurse.api("GET", f"/api/v1/sessions/{sid}").json()["alarms"]:
        if a["status"] == "raised":
            nurse.api("POST", f"/api/v1/alarms/{a['id']}/acknowledge", json={})
        if a["status"] != "resolved":
            nurse.api("POST", f"/api/v1/alarms/{a['id']}/resolve", json={})

    ae = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/adverse-events",
        json={"term_key": "hypertension", "grade": 3, "actions": ["rate_lowered"], "outcome": "resolved"},
    )
    assert ae.status_code == 201, ae.text
    assert ae.json()["needs_review"] and ae.json()["needed_intervention"]

    assert nurse.api("POST", f"/api/v1/sessions/{sid}/end-dosing", json={}).json()["status"] == "recovery"
    # Move the dosing back an hour: the 60-minute wait has passed.
    for entry in db.query(Administration).filter_by(session_id=sid):
        entry.given_at = entry.given_at - dt.timedelta(minutes=70)
    db.commit()
    nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/vitals",
        json={
            "readings": [
                {"kind": "sbp", "value": 128},
                {"kind": "dbp", "value": 80},
                {"kind": "hr", "value": 74},
                {"kind": "spo2", "value": 98},
            ]
        },
    )
    nurse.api(
        "POST", f"/api/v1/sessions/{sid}/scores", json={"scale": "moaas", "items": [5], "phase": "after"}
    )
    refused = nurse.api("POST", f"/api/v1/sessions/{sid}/discharge", json={})
    assert refused.status_code == 422 and "escort" in refused.text.lower()
    checks = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/discharge-checks",
        json={"alert_and_oriented": True, "escort_present": True, "instructions_given": True},
    )
    body = checks.json()
    assert body["status"] == "ready_for_discharge", body["discharge_checklist"]
    done = nurse.api("POST", f"/api/v1/sessions/{sid}/discharge", json={})
    assert done.status_code == 200 and done.json()["status"] == "discharged"
    # the infusion ran for seconds in this test: an IV push code, counted from the actual duration
    assert done.json()["billing"] == [{"code": "96374", "units": 1}]
    assert audit_entries(db, "session.discharge")
    row = db.get(TreatmentSession, sid)
    db.refresh(row)
    assert row.status == "discharged"
