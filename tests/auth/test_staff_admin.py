"""Clinic admins add staff (after re-authenticating), change roles; all of it audited."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from ketacare.auth.models import LoginSession, User
from ketacare.db import utcnow
from tests.helpers import PASSWORD, audit_entries, next_code


def _reauth(admin, world) -> None:  # type: ignore[no-untyped-def]
    code = next_code(world.users["admin"])
    response = admin.post("/reauth", {"password": PASSWORD, "code": code, "next": "/admin/users/new"})
    assert response.status_code == 200, response.text


def test_adding_staff_needs_recent_reauthentication(as_role, world, db) -> None:
    admin = as_role("admin")
    db.execute(update(LoginSession).values(reauthenticated_at=utcnow() - dt.timedelta(minutes=10)))
    db.commit()
    page = admin.get("/admin/users/new", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/reauth")
    refused = admin.post("/reauth", {"password": "wrong", "code": "000000", "next": "/admin/users/new"})
    assert refused.status_code == 422
    _reauth(admin, world)
    assert admin.get("/admin/users/new").status_code == 200


def test_admin_adds_nurse_and_prescriber(as_role, world, db) -> None:
    admin = as_role("admin")
    nurse = admin.post(
        "/admin/users",
        {
            "full_name": "Nina Nurse",
            "username": "nina",
            "role": "nurse",
            "password": "a long enough password",
        },
    )
    assert nurse.status_code == 200 and "nina was added" in nurse.text
    prescriber = admin.post(
        "/admin/users",
        {
            "full_name": "Dr Pat",
            "username": "drpat",
            "role": "prescriber",
            "prescriber_kind": "nurse_practitioner",
            "password": "a long enough password",
        },
    )
    assert prescriber.status_code == 200
    created = db.execute(select(User).where(User.username.in_(["nina", "drpat"]))).scalars().all()
    assert {u.role for u in created} == {"nurse", "prescriber"}
    assert {u.clinic_id for u in created} == {world.clinic.id}
    assert len(audit_entries(db, "user.create")) == 2


def test_bad_new_user_keeps_typed_values(as_role, db) -> None:
    admin = as_role("admin")
    response = admin.post(
        "/admin/users",
        {"full_name": "Dr Pat", "username": "Bad Name!", "role": "prescriber", "password": "short"},
    )
    assert response.status_code == 422
    assert 'value="Dr Pat"' in response.text
    assert "lower-case letters" in response.text
    assert "physician or a nurse practitioner" in response.text
    assert db.execute(select(User).where(User.full_name == "Dr Pat")).first() is None


def test_role_change_is_audited_and_own_role_is_locked(as_role, world, db) -> None:
    admin = as_role("admin")
    researcher = world.users["researcher"]
    response = admin.post(f"/admin/users/{researcher.id}/role", {"role": "auditor"})
    assert response.status_code == 200
    db.refresh(researcher)
    assert researcher.role == "auditor"
    assert audit_entries(db, "user.set_role")[0].detail == "researcher.t: researcher -> auditor"
    own = admin.post(f"/admin/users/{world.users['admin'].id}/role", {"role": "nurse"})
    assert own.status_code == 403


def test_admin_cannot_touch_another_clinics_user(as_role, world) -> None:
    admin = as_role("admin")
    outsider = world.users["outsider"]
    assert admin.get(f"/admin/users/{outsider.id}").status_code == 404
    assert admin.post(f"/admin/users/{outsider.id}/role", {"role": "nurse"}).status_code == 404


def test_nurse_cannot_manage_staff(as_role, db) -> None:
    nurse = as_role("nurse")
    assert nurse.get("/admin/users").status_code == 403
    assert audit_entries(db, "access.denied")


def test_admin_opens_a_patient_account_linked_to_the_record(as_role, browser, world, db) -> None:
    admin = as_role("admin")
    form = {
        "full_name": "Grace H",
        "username": "grace",
        "role": "patient",
        "password": "a long enough password",
    }
    missing = admin.post("/admin/users", {**form, "patient_record_number": "TST-NOPE"})
    assert missing.status_code == 422 and "record number of this person" in missing.text
    taken = admin.post("/admin/users", {**form, "patient_record_number": world.patient_b.record_number})
    assert taken.status_code == 422 and "already has an account" in taken.text
    new_record = {
        "given_name": "Grace",
        "family_name": "Hopper",
        "date_of_birth": "1976-12-09",
        "sex": "female",
    }
    record = admin.api("POST", "/api/v1/patients", json=new_record).json()
    created = admin.post("/admin/users", {**form, "patient_record_number": record["record_number"].lower()})
    assert created.status_code == 200
    grace = db.execute(select(User).where(User.username == "grace")).scalar_one()
    assert grace.patient_id == record["id"]
    patient = browser()
    patient.login(grace, "a long enough password")
    assert patient.api("GET", "/api/v1/me").json()["family_name"] == "Hopper"
