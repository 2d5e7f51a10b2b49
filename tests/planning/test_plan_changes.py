"""A written plan's life: cancel a session (with its reason), reschedule one with the same
double-booking checks as booking, cancel the whole plan; from the API and the pages, audited."""

from __future__ import annotations

import datetime as dt

from ketacare.planning.models import PlanSession, TreatmentPlan
from tests.helpers import audit_entries, clinic_today, count, is_problem
from tests.planning.conftest import crps_plan, make_ready

TODAY = clinic_today()


def day(n: int) -> str:
    return (TODAY + dt.timedelta(days=n)).isoformat()


def _scheduled(dr, patient_id: int, **changes: object) -> dict:  # type: ignore[no-untyped-def]
    make_ready(dr, patient_id)
    plan = dr.api("POST", f"/api/v1/patients/{patient_id}/plans", json=crps_plan(**changes))
    assert plan.status_code == 201, plan.text
    booked = dr.api("POST", f"/api/v1/plans/{plan.json()['id']}/schedule")
    assert booked.status_code == 200, booked.text
    return booked.json()  # type: ignore[no-any-return]


def test_cancel_a_session_with_its_reason(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    plan = _scheduled(dr, world.patient_a.id)
    url = f"/api/v1/plans/{plan['id']}/sessions/3/cancel"
    no_reason = dr.api("POST", url, json={"reason": " "})
    assert is_problem(no_reason, 422) and no_reason.json()["errors"][0]["field"] == "reason"
    assert count(db, PlanSession, PlanSession.status == "cancelled") == 0
    done = dr.api("POST", url, json={"reason": "Patient has a chest infection"})
    assert done.status_code == 200, done.text
    third = done.json()["sessions"][2]
    assert third["status"] == "cancelled" and third["cancel_reason"] == "Patient has a chest infection"
    (entry,) = audit_entries(db, "plan.session.cancel")
    assert entry.patient_id == world.patient_a.id and "chest infection" in entry.detail
    again = dr.api("POST", url, json={"reason": "Patient has a chest infection"})
    assert is_problem(again, 422) and "cancelled" in again.json()["errors"][0]["message"]
    calendar = dr.api("GET", "/api/v1/calendar", params={"start": day(1)}).json()
    assert [c["session"] for c in calendar] == [1, 2, 4, 5]
    # The freed chair is bookable again: another patient's session can take that time.
    assert as_role("nurse").api("POST", url, json={"reason": "nurses cannot"}).status_code == 403
    assert (
        dr.api(
            "POST", f"/api/v1/plans/{plan['id']}/sessions/9/cancel", json={"reason": "no such"}
        ).status_code
        == 404
    )


def test_reschedule_keeps_the_double_booking_checks(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    first = _scheduled(dr, world.patient_a.id)  # days 1-5 at 09:00, the one chair
    _scheduled(dr, world.patient_b.id, start_date=day(7), preferred_time="08:00")  # days 7-11 at 08:00
    url = f"/api/v1/plans/{first['id']}/sessions/5/reschedule"
    # The one chair is patient B's on day 7 from 08:00 to 12:00: refused, the next time offered.
    taken = dr.api("POST", url, json={"on_date": day(7), "start_time": "09:00"})
    assert is_problem(taken, 422)
    error = taken.json()["errors"][0]
    assert error["field"] == "start_time" and "The next free time that day is 12:00" in error["message"]
    # The titration order: session 2 cannot move onto session 1's or session 3's day.
    two = f"/api/v1/plans/{first['id']}/sessions/2/reschedule"
    order = dr.api("POST", two, json={"on_date": day(1), "start_time": "14:00"})
    assert "stays after session 1" in order.json()["errors"][0]["message"]
    order = dr.api("POST", two, json={"on_date": day(3), "start_time": "14:00"})
    assert "stays before session 3" in order.json()["errors"][0]["message"]
    outside = dr.api("POST", two, json={"on_date": day(2), "start_time": "06:00"})
    assert "outside the opening hours" in outside.json()["errors"][0]["message"]
    past = dr.api("POST", two, json={"on_date": day(-1), "start_time": "09:00"})
    assert is_problem(past, 422)
    missing = dr.api("POST", two, json={"start_time": "09:00"})
    assert is_problem(missing, 422) and missing.json()["errors"][0]["field"] == "on_date"
    before = {s.id: (s.starts_at, s.chair_id) for s in db.query(PlanSession)}
    db.expire_all()
    assert {s.id: (s.starts_at, s.chair_id) for s in db.query(PlanSession)} == before
    assert not audit_entries(db, "plan.session.reschedule")
    # At 12:00 on day 7 it fits: the plan's end date follows the last session.
    moved = dr.api(
        "POST", url, json={"on_date": day(7), "start_time": "12:00", "reason": "Patient's request"}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["end_date"] == day(7)
    (entry,) = audit_entries(db, "plan.session.reschedule")
    assert f"{day(7)} 12:00" in entry.detail and "Patient's request" in entry.detail
    calendar = dr.api("GET", "/api/v1/calendar", params={"start": day(7), "days": 1}).json()
    shown = [(c["patient"], c["session"]) for c in calendar]
    assert shown.index(("Hopper, Grace", 1)) < shown.index(("Lovelace, Ada", 5))
    # Moving into a day of another plan of the same patient is refused too.
    again = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan(start_date=day(20)))
    assert again.status_code == 201
    into = dr.api("POST", url, json={"on_date": day(21), "start_time": "09:00"})
    assert "overlaps plan" in into.json()["errors"][0]["message"]


def test_reschedule_and_cancel_from_the_plan_page(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    plan = _scheduled(dr, world.patient_a.id)
    page = dr.get(f"/plans/{plan['id']}")
    assert "Reschedule or cancel session 1" in page.text and "Cancel the whole plan" in page.text
    bad = dr.post(
        f"/plans/{plan['id']}/sessions/2/reschedule",
        {"which": "reschedule", "on_date": day(1), "start_time": "15:00"},
    )
    assert bad.status_code == 422 and "stays after session 1" in bad.text and 'value="15:00"' in bad.text
    ok = dr.post(
        f"/plans/{plan['id']}/sessions/5/reschedule",
        {"which": "reschedule", "on_date": day(8), "start_time": "08:30"},
    )
    assert ok.status_code == 200 and "Saved." in ok.text
    short = dr.post(f"/plans/{plan['id']}/sessions/1/cancel", {"which": "cancel", "reason": "no"})
    assert short.status_code == 422 and 'value="no"' in short.text
    done = dr.post(
        f"/plans/{plan['id']}/sessions/1/cancel", {"which": "cancel", "reason": "Transport fell through"}
    )
    assert done.status_code == 200 and "cancelled</strong>: Transport fell through" in done.text


def test_cancel_the_whole_plan(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    plan = _scheduled(dr, world.patient_a.id)
    bad = dr.post(f"/plans/{plan['id']}/cancel", {"reason": ""})
    assert bad.status_code == 422 and db.get(TreatmentPlan, plan["id"]).status == "scheduled"
    ok = dr.post(f"/plans/{plan['id']}/cancel", {"reason": "Patient chose not to go ahead"})
    assert (
        ok.status_code == 200 and "Plan cancelled." in ok.text and "Patient chose not to go ahead" in ok.text
    )
    db.expire_all()
    assert db.get(TreatmentPlan, plan["id"]).status == "cancelled"
    assert count(db, PlanSession, PlanSession.status == "cancelled") == 5
    (entry,) = audit_entries(db, "plan.cancel")
    assert "5 future sessions cancelled" in entry.detail
    assert dr.api("GET", "/api/v1/calendar", params={"start": day(1)}).json() == []
    again = dr.api("POST", f"/api/v1/plans/{plan['id']}/cancel", json={"reason": "twice over"})
    assert is_problem(again, 422)
    # The dates are free again for a new plan for the same patient.
    assert dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan()).status_code == 201
    assert (
        as_role("outsider")
        .api("POST", f"/api/v1/plans/{plan['id']}/cancel", json={"reason": "not mine"})
        .status_code
        == 404
    )


def test_unscheduled_plan_can_be_cancelled_by_api(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    make_ready(dr, world.patient_a.id)
    plan = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan()).json()
    done = dr.api("POST", f"/api/v1/plans/{plan['id']}/cancel", json={"reason": "Written in error"})
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    assert done.json()["cancel_reason"] == "Written in error"
    assert is_problem(dr.api("POST", f"/api/v1/plans/{plan['id']}/schedule"), 422)
