"""The session pages: day list with check-in, the session page's forms (errors re-render with
field messages and change nothing), the live board fragment, notices."""

from __future__ import annotations

from ketacare.sessions.models import PreCheck, VitalSign
from tests.helpers import count
from tests.sessions.conftest import PRECHECKS, checked_in, running


def test_day_list_check_in_and_prechecks_by_form(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    page = nurse.get("/sessions")
    assert page.status_code == 200 and "Check in" in page.text
    r = nurse.post(f"/sessions/check-in/{booked.plan_session_ids[0]}", {}, follow_redirects=False)
    assert r.status_code == 303
    sid = int(r.headers["location"].rsplit("/", 1)[1])
    detail = nurse.get(f"/sessions/{sid}")
    assert detail.status_code == 200 and "Pre-checks" in detail.text
    # Missing escort and oximeter: 422 with messages, nothing saved
    bad = {k: str(v) for k, v in PRECHECKS.items() if not isinstance(v, bool)}
    bad["prescriber_on_site_id"] = str(world.users["prescriber"].id)
    bad["consent_on_file"] = "on"
    refused = nurse.post(f"/sessions/{sid}/prechecks", bad, follow_redirects=False)
    assert refused.status_code == 422
    assert "escort must be confirmed" in refused.text and "pulse oximeter" in refused.text
    assert count(db, PreCheck) == 0
    good = {**bad, "escort_confirmed": "on", "oximeter_connected": "on", "lft_on_file": "on"}
    ok = nurse.post(f"/sessions/{sid}/prechecks", good, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    assert count(db, PreCheck) == 1


def test_pre_dose_bp_above_140_90_needs_a_prescriber_decision(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = checked_in(nurse, booked)
    body = {**PRECHECKS, "sbp": 152, "dbp": 92, "prescriber_on_site_id": world.users["prescriber"].id}
    refused = nurse.api("POST", f"/api/v1/sessions/{sid}/prechecks", json=body)
    assert refused.status_code == 422 and "prescriber must document" in refused.text
    # a nurse cannot document it
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/bp-decision", json={"reason": "x"}).status_code == 403
    dr = as_role("prescriber")
    assert (
        dr.api(
            "POST", f"/api/v1/sessions/{sid}/bp-decision", json={"reason": "Usual BP, treated; go ahead"}
        ).status_code
        == 200
    )
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/prechecks", json=body).status_code == 200


def test_session_page_forms_and_board(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    page = nurse.get(f"/sessions/{sid}")
    assert (
        page.status_code == 200 and "Administration record" in page.text and "Predicted Cp now" in page.text
    )
    before = count(db, VitalSign)
    bad = nurse.post(f"/sessions/{sid}/vitals", {"sbp": "900", "hr": "70"}, follow_redirects=False)
    assert bad.status_code == 422 and "plausible range" in bad.text
    assert count(db, VitalSign) == before
    assert (
        nurse.post(f"/sessions/{sid}/vitals", {"sbp": "190", "hr": "80"}, follow_redirects=False).status_code
        == 303
    )
    board = nurse.get("/sessions-board/rows")
    assert board.status_code == 200 and f'id="board-session-{sid}"' in board.text and "ALARM" in board.text
    full = nurse.get("/sessions-board")
    assert full.status_code == 200 and 'hx-trigger="every 1s' in full.text
    score = nurse.post(
        f"/sessions/{sid}/scores",
        {"scale": "cadss6", "items": ["1", "0", "2", "0", "0", "1"]},
        follow_redirects=False,
    )
    assert score.status_code == 303
    bad_score = nurse.post(
        f"/sessions/{sid}/scores", {"scale": "cadss6", "items": ["1", "0"]}, follow_redirects=False
    )
    assert bad_score.status_code == 422
    ae = nurse.post(
        f"/sessions/{sid}/adverse-events",
        {"term_key": "nausea", "grade": "1", "outcome": "resolved", "actions": "observed"},
        follow_redirects=False,
    )
    assert ae.status_code == 303, ae.text
    prescriber = as_role("prescriber")
    assert prescriber.get("/notices").status_code == 200


def test_a_long_term_safety_hold_blocks_the_prechecks(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    from ketacare.safety.models import SafetyHold

    nurse = as_role("nurse")
    sid = checked_in(nurse, booked)
    db.add(
        SafetyHold(
            clinic_id=world.clinic.id,
            patient_id=booked.patient_id,
            kind="liver",
            reason="ALT 4x ULN",
            source="Noppers 2011",
            tag="V",
        )
    )
    db.commit()
    body = {**PRECHECKS, "prescriber_on_site_id": world.users["prescriber"].id}
    refused = nurse.api("POST", f"/api/v1/sessions/{sid}/prechecks", json=body)
    assert refused.status_code == 422 and "ALT 4x ULN" in refused.text
    assert count(db, PreCheck) == 0


def test_dates_far_outside_any_record_are_refused_not_crashed(as_role) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    assert nurse.api("GET", "/api/v1/sessions/day?date=9999-12-31").status_code == 422
    assert nurse.get("/sessions?date=0001-01-01").status_code == 422
    assert nurse.api("GET", "/api/v1/rems/export.csv?start=9999-12-31&end=9999-12-31").status_code in (
        401,
        422,
    )


def test_discharge_before_the_checklist_is_green_is_a_prescribers_override(
    as_role, world, db, booked
) -> None:  # type: ignore[no-untyped-def]
    from tests.sessions.conftest import running

    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/end-dosing", json={}).status_code == 200
    early = nurse.api("POST", f"/api/v1/sessions/{sid}/discharge", json={})
    assert early.status_code == 422 and "60 minutes" in early.text
    sneaky = nurse.api("POST", f"/api/v1/sessions/{sid}/discharge", json={"override_reason": "in a hurry"})
    assert sneaky.status_code == 422 and "discharge-override" in sneaky.text
    assert (
        nurse.api("POST", f"/api/v1/sessions/{sid}/discharge-override", json={"reason": "x"}).status_code
        == 403
    )
    dr = as_role("prescriber")
    done = dr.api(
        "POST", f"/api/v1/sessions/{sid}/discharge-override", json={"reason": "Transfer to hospital"}
    )
    assert done.status_code == 200 and done.json()["discharge_override_reason"] == "Transfer to hospital"
