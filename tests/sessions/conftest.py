"""A patient with a signed plan and a session booked today, and helpers that walk the session
through its states over the JSON API."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy import update

from ketacare.planning.models import PlanSession
from tests.helpers import clinic_today
from tests.planning.conftest import chairs, crps_plan, make_ready  # noqa: F401 (fixture)


@dataclass
class Booked:
    plan_id: int
    plan_session_ids: list[int]
    patient_id: int


def book(as_role, world, db, patient=None, **plan_changes: object) -> Booked:  # type: ignore[no-untyped-def]
    """A signed, scheduled CRPS plan; its first session moved to now (the check-in list is 'today')."""
    patient = patient or world.patient_a
    dr = as_role("prescriber")
    make_ready(dr, patient.id)
    created = dr.api("POST", f"/api/v1/patients/{patient.id}/plans", json=crps_plan(**plan_changes))
    assert created.status_code == 201, created.text
    plan_id = int(created.json()["id"])
    scheduled = dr.api("POST", f"/api/v1/plans/{plan_id}/schedule")
    assert scheduled.status_code == 200, scheduled.text
    who = "patient_a" if patient.id == world.patient_a.id else "patient_b"
    signed = as_role(who).api(
        "POST",
        f"/api/v1/me/plans/{plan_id}/consent/sign",
        json={
            "typed_name": f"{patient.given_name} {patient.family_name}",
            "signed_on": clinic_today().isoformat(),
            "agree": True,
        },
    )
    assert signed.status_code == 200, signed.text
    ids = sorted(s["plan_session_id"] for s in scheduled.json()["sessions"])
    now = dt.datetime.now(dt.UTC)
    db.execute(
        update(PlanSession)
        .where(PlanSession.id == ids[0])
        .values(starts_at=now, ends_at=now + dt.timedelta(hours=2))
    )
    db.commit()
    return Booked(plan_id, ids, patient.id)


PRECHECKS = {
    "weight_kg": 80,
    "sbp": 124,
    "dbp": 78,
    "hr": 72,
    "spo2": 98,
    "rr": 14,
    "consent_on_file": True,
    "ecg_on_file": False,
    "lft_on_file": True,
    "pregnancy_test": "negative",
    "escort_name": "Sam Escort",
    "escort_phone": "555-0100",
    "escort_confirmed": True,
    "oximeter_connected": True,
}


def checked_in(nurse, booked: Booked) -> int:  # type: ignore[no-untyped-def]
    r = nurse.api("POST", f"/api/v1/plan-sessions/{booked.plan_session_ids[0]}/check-in")
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def prechecked(nurse, world, booked: Booked, **changes: object) -> int:  # type: ignore[no-untyped-def]
    sid = checked_in(nurse, booked)
    body = {**PRECHECKS, "prescriber_on_site_id": world.users["prescriber"].id, **changes}
    r = nurse.api("POST", f"/api/v1/sessions/{sid}/prechecks", json=body)
    assert r.status_code == 200, r.text
    return sid


def running(nurse, world, booked: Booked, rate_mg_per_h: float = 28.0) -> int:  # type: ignore[no-untyped-def]
    sid = prechecked(nurse, world, booked)
    r = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/administrations",
        json={
            "kind": "start",
            "drug": "ketamine",
            "rate_mg_per_h": rate_mg_per_h,
            "lot": "LOT-1",
            "product": "Ketalar",
        },
    )
    assert r.status_code == 201, r.text
    return sid


@pytest.fixture
def booked(as_role, world, db, chairs) -> Booked:  # type: ignore[no-untyped-def]  # noqa: F811
    return book(as_role, world, db)


def discharged(as_role, world, db, patient=None) -> int:  # type: ignore[no-untyped-def]
    """A completed session (discharged by a prescriber's override right after dosing)."""
    from ketacare.planning.models import Chair
    from tests.planning.conftest import roster

    if not db.query(Chair).filter_by(clinic_id=world.clinic.id).count():
        db.add(Chair(clinic_id=world.clinic.id, room="Room 1", name="Chair A", active=True))
        db.commit()
        roster(db, world.clinic.id, [world.users["nurse"], world.users["prescriber"]])
    nurse = as_role("nurse")
    sid = running(nurse, world, book(as_role, world, db, patient))
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/end-dosing", json={}).status_code == 200
    done = as_role("prescriber").api(
        "POST", f"/api/v1/sessions/{sid}/discharge-override", json={"reason": "Test: discharged early"}
    )
    assert done.status_code == 200, done.text
    return sid
