"""An auditor sees who read a patient's record and when; CSV export; the chain check page."""

from __future__ import annotations

import csv
import io

from tests.helpers import PASSWORD, audit_entries


def test_auditor_sees_who_read_the_record(as_role, world, db) -> None:
    nurse = as_role("nurse")
    assert nurse.get(f"/patients/{world.patient_a.id}").status_code == 200
    auditor = as_role("auditor")
    page = auditor.get("/audit", params={"patient": world.patient_a.record_number})
    assert page.status_code == 200
    assert "patient.read" in page.text and "nurse.t" in page.text
    assert "Lovelace" not in page.text  # the auditor sees record numbers, not names
    assert audit_entries(db, "audit.search")  # auditing the auditor


def test_filter_by_user_and_date(as_role, world) -> None:
    as_role("nurse").get(f"/patients/{world.patient_a.id}")
    auditor = as_role("auditor")
    page = auditor.get("/audit", params={"user": "nurse.t", "date_from": "2000-01-01"})
    assert "nurse.t" in page.text
    bad = auditor.get("/audit", params={"date_from": "yesterday"})
    assert bad.status_code == 422 and "Use a date like" in bad.text


def test_unknown_record_number_is_a_clear_error(as_role) -> None:
    page = as_role("auditor").get("/audit", params={"patient": "NOPE-1"})
    assert page.status_code == 422 and "No patient with record number" in page.text


def test_csv_export_needs_reauthentication_and_is_audited(as_role, world, db) -> None:
    as_role("nurse").get(f"/patients/{world.patient_a.id}")
    auditor = as_role("auditor")
    export = auditor.get("/audit.csv", params={"patient": world.patient_a.record_number})
    assert export.status_code == 200  # just logged in: the password was confirmed moments ago
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert any(r["action"] == "patient.read" and r["username"] == "nurse.t" for r in rows)
    assert audit_entries(db, "audit.export")


def test_only_auditors_see_the_trail(as_role) -> None:
    for role in ("nurse", "prescriber", "researcher", "patient_a"):
        assert as_role(role).get("/audit").status_code == 403, role


def test_verify_page(as_role) -> None:
    auditor = as_role("auditor")
    page = auditor.post("/audit/verify")
    assert page.status_code == 200 and "The chain is intact" in page.text


def test_privilege_change_and_failed_login_are_in_the_trail(as_role, browser, world, db) -> None:
    b = browser()
    b.refresh_csrf()
    b.post("/login", {"username": "nurse.t", "password": PASSWORD + "x"})
    admin = as_role("admin")
    admin.post(f"/admin/users/{world.users['researcher'].id}/role", {"role": "auditor"})
    page = as_role("auditor").get("/audit")
    assert "auth.login" in page.text and "failure" in page.text
    assert "user.set_role" in page.text


def test_csv_export_cannot_carry_a_formula(as_role, world, db) -> None:
    from ketacare.audit import service

    planted = '=HYPERLINK("http://x","y")'
    service.record(
        db, None, "patient.update", "patient", patient_id=world.patient_a.id, detail=planted,
        username="nurse.t", clinic_id=world.clinic.id,
    )  # fmt: skip
    db.commit()
    export = as_role("auditor").get("/audit.csv", params={"patient": world.patient_a.record_number})
    rows = list(csv.DictReader(io.StringIO(export.text)))
    [row] = [r for r in rows if r["action"] == "patient.update"]
    assert row["detail"] == "'" + planted
