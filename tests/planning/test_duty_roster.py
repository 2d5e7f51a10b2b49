"""The duty roster and the clinic's opening hours: the admin manages them on pages and the API,
scheduling uses them, and a session with no prescriber on duty is refused with the reason."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.errors import InvalidInput, NotFound
from ketacare.planning import setup
from ketacare.planning.models import DutyShift, PlanSession, ScheduleSettings
from ketacare.planning.schemas import DutyIn
from tests.helpers import audit_entries, clinic_today, count, is_problem
from tests.planning.conftest import TOMORROW, crps_plan, make_ready, roster

IN_A_WEEK = (clinic_today() + dt.timedelta(days=7)).isoformat()


def test_no_prescriber_on_duty_refuses_booking_with_a_clear_message(as_role, world, db, chair_only) -> None:
    roster(db, world.clinic.id, [world.users["nurse"]])  # a nurse alone
    dr = as_role("prescriber")
    make_ready(dr, world.patient_a.id)
    plan = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan()).json()
    refused = dr.api("POST", f"/api/v1/plans/{plan['id']}/schedule")
    assert is_problem(refused, 422)
    message = refused.json()["errors"][0]["message"]
    assert "no prescriber is on the duty roster" in message and "onsite" in message and TOMORROW in message
    assert count(db, PlanSession) == 0
    page = dr.post(f"/plans/{plan['id']}/schedule")
    assert page.status_code == 422 and "no prescriber is on the duty roster" in page.text
    # The admin puts the prescriber on duty for the week: now it books, the nurse at the chair.
    admin = as_role("admin")
    added = admin.api(
        "POST",
        "/api/v1/duty",
        json={
            "user_id": world.users["prescriber"].id,
            "on_date": TOMORROW,
            "start_time": "08:00",
            "end_time": "18:00",
            "repeat_weeks": 1,
        },
    )
    assert added.status_code == 201 and added.json()[0]["role"] == "prescriber"
    for n in range(2, 6):
        day = (clinic_today() + dt.timedelta(days=n)).isoformat()
        body = {
            "user_id": world.users["prescriber"].id,
            "on_date": day,
            "start_time": "08:00",
            "end_time": "18:00",
        }
        assert admin.api("POST", "/api/v1/duty", json=body).status_code == 201
    booked = dr.api("POST", f"/api/v1/plans/{plan['id']}/schedule")
    assert booked.status_code == 200, booked.text
    assert {s["staff"] for s in booked.json()["sessions"]} == {"Nurse"}
    assert len(audit_entries(db, "planning.duty.add")) == 5


def test_admin_manages_the_roster_on_its_page(as_role, world, db) -> None:
    admin = as_role("admin")
    page = admin.get("/planning/duty")
    assert page.status_code == 200 and "Put someone on duty" in page.text and "Nobody" in page.text
    bad = admin.post(
        "/planning/duty",
        {
            "user_id": str(world.users["nurse"].id),
            "on_date": IN_A_WEEK,
            "start_time": "17:00",
            "end_time": "09:00",
        },
    )
    assert bad.status_code == 422 and "must end after it starts" in bad.text and 'value="17:00"' in bad.text
    not_staff = admin.post(
        "/planning/duty",
        {
            "user_id": str(world.users["researcher"].id),
            "on_date": IN_A_WEEK,
            "start_time": "08:00",
            "end_time": "12:00",
        },
    )
    assert not_staff.status_code == 422 and "active nurse or prescriber" in not_staff.text
    assert count(db, DutyShift) == 0
    ok = admin.post(
        "/planning/duty",
        {
            "user_id": str(world.users["nurse"].id),
            "on_date": IN_A_WEEK,
            "start_time": "08:00",
            "end_time": "12:00",
            "repeat_weeks": "3",
        },
    )
    assert ok.status_code == 200 and "Shift saved" in ok.text and "08:00–12:00 Nurse" in ok.text
    assert count(db, DutyShift) == 3
    overlap = admin.post(
        "/planning/duty",
        {
            "user_id": str(world.users["nurse"].id),
            "on_date": IN_A_WEEK,
            "start_time": "11:00",
            "end_time": "15:00",
        },
    )
    assert overlap.status_code == 422 and "already on duty" in overlap.text
    listed = admin.api("GET", "/api/v1/duty", params={"start": IN_A_WEEK, "days": 30}).json()
    assert [r["on_date"] for r in listed] == [
        (dt.date.fromisoformat(IN_A_WEEK) + dt.timedelta(weeks=w)).isoformat() for w in range(3)
    ]
    shift_id = listed[0]["id"]
    gone = admin.post(f"/planning/duty/{shift_id}/delete")
    assert gone.status_code == 200 and "Shift removed" in gone.text
    assert admin.api("DELETE", f"/api/v1/duty/{listed[1]['id']}").status_code == 204
    assert count(db, DutyShift) == 1 and len(audit_entries(db, "planning.duty.remove")) == 2
    # Nurses and prescribers read the roster; only the admin changes it.
    nurse = as_role("nurse")
    assert nurse.get("/planning/duty").status_code == 200
    assert "Put someone on duty" not in nurse.get("/planning/duty").text
    assert nurse.api("POST", "/api/v1/duty", json={}).status_code == 403
    assert nurse.api("DELETE", f"/api/v1/duty/{listed[2]['id']}").status_code == 403
    assert as_role("outsider").api("DELETE", f"/api/v1/duty/{listed[2]['id']}").status_code == 403


def test_a_shift_that_booked_sessions_rely_on_cannot_be_removed(as_role, world, db, chair_only) -> None:
    roster(db, world.clinic.id, [world.users["prescriber"]], days=10)
    dr = as_role("prescriber")
    make_ready(dr, world.patient_a.id)
    plan = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan()).json()
    assert dr.api("POST", f"/api/v1/plans/{plan['id']}/schedule").status_code == 200
    admin = as_role("admin")
    shift = admin.api("GET", "/api/v1/duty", params={"start": TOMORROW, "days": 1}).json()[0]
    refused = admin.api("DELETE", f"/api/v1/duty/{shift['id']}")
    assert (
        is_problem(refused, 422) and "reschedule or cancel it first" in refused.json()["errors"][0]["message"]
    )
    assert count(db, DutyShift) == 10
    assert not audit_entries(db, "planning.duty.remove")


def test_opening_hours_and_slot_length_are_clinic_settings(as_role, world, db, chairs) -> None:
    admin = as_role("admin")
    page = admin.get("/planning/prices")
    assert 'value="08:00"' in page.text and 'value="18:00"' in page.text and 'value="30"' in page.text
    bad = admin.post("/planning/hours", {"opens_at": "19:00", "closes_at": "07:00", "slot_min": "30"})
    assert bad.status_code == 422 and "Closing time must be after opening time" in bad.text
    assert 'value="19:00"' in bad.text and count(db, ScheduleSettings) == 0
    ok = admin.post("/planning/hours", {"opens_at": "12:00", "closes_at": "18:00", "slot_min": "15"})
    assert ok.status_code == 200 and "Opening hours and slot length saved" in ok.text
    assert admin.api("GET", "/api/v1/clinic-hours").json() == {
        "opens_at": "12:00:00",
        "closes_at": "18:00:00",
        "slot_min": 15,
    }
    assert audit_entries(db, "planning.hours.save")
    # A 09:00 preferred start now books at opening, 12:00 clinic time.
    dr = as_role("prescriber")
    make_ready(dr, world.patient_a.id)
    plan = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan()).json()
    booked = dr.api("POST", f"/api/v1/plans/{plan['id']}/schedule").json()
    starts = dt.datetime.fromisoformat(booked["sessions"][0]["starts_at"])
    assert starts.astimezone(dt.timezone(dt.timedelta(hours=0))).hour in (16, 17)  # 12:00 New York
    put = admin.api(
        "PUT", "/api/v1/clinic-hours", json={"opens_at": "08:00", "closes_at": "08:00", "slot_min": 30}
    )
    assert is_problem(put, 422)
    assert dr.api("PUT", "/api/v1/clinic-hours", json={}).status_code == 403


def test_prices_page_says_saved(as_role, world) -> None:
    admin = as_role("admin")
    ok = admin.post(
        "/planning/prices",
        {
            "consultation_usd": "400",
            "drug_usd_per_mg": "0.5",
            "premedication_usd_per_session": "10",
            "session_bands": "60=500",
        },
    )
    assert ok.status_code == 200 and "Prices saved." in ok.text
    assert "Chair added." in admin.post("/planning/chairs", {"room": "R1", "name": "C1"}).text


def test_another_clinics_shift_is_not_found(world, db) -> None:
    roster(db, world.clinic.id, [world.users["nurse"]], days=1)
    shift = db.query(DutyShift).one()
    outsider = Principal(
        user_id=world.users["outsider"].id,
        username="outsider.t",
        role=Role.clinic_admin,
        clinic_id=world.other_clinic.id,
        client_addr="test",
    )
    with pytest.raises(NotFound):
        setup.remove_duty(db, outsider, shift.id)
    with pytest.raises(InvalidInput) as refused:
        setup.add_duty(
            db,
            outsider,
            DutyIn(
                user_id=world.users["nurse"].id,
                on_date=clinic_today(),
                start_time=dt.time(8),
                end_time=dt.time(12),
            ),
        )
    assert "user_id" in refused.value.errors
    assert count(db, DutyShift) == 1
