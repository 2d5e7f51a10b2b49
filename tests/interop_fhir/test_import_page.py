"""The upload page: a clinic admin uploads NDJSON files and sees the per-line report; a nurse
gets 403; another clinic's admin imports into their own clinic and cannot reach this one's
patients."""

from __future__ import annotations

from sqlalchemy import select

from ketacare.auth.roles import Role
from ketacare.interop.fhir.resources.base import record_number_system
from ketacare.patients.models import Condition, Patient
from tests.interop_fhir.test_import_good import CONDITION, GOOD_FILE, PATIENT, ndjson, observation, quantity

PAGE = "/fhir-exchange/imports"


def _upload(browser_, files: list[tuple[str, bytes]], source: str = "old-ehr"):  # type: ignore[no-untyped-def]
    return browser_.client.post(
        PAGE,
        data={"csrf_token": browser_.csrf, "source": source},
        files=[("files", (name, content, "application/fhir+ndjson")) for name, content in files],
    )


def test_an_admin_uploads_files_and_sees_the_report(as_role, world, db) -> None:
    admin = as_role("admin")
    page = admin.client.get(PAGE)
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    assert 'href="/fhir-exchange/imports"' in admin.client.get("/fhir-exchange").text
    admin.refresh_csrf(PAGE)
    bad = ndjson({**CONDITION, "id": "c9", "code": {"text": "back pain"}})
    response = _upload(admin, [("records.ndjson", GOOD_FILE), ("more.ndjson", bad)])
    assert response.status_code == 200, response.text
    assert "<strong>10</strong> lines: <strong>9</strong> accepted" in response.text
    assert "<strong>1</strong> rejected" in response.text
    assert "Condition.code has no ICD-10-CM coding" in response.text and "more.ndjson" in response.text
    patient = db.execute(
        select(Patient).where(Patient.clinic_id == world.clinic.id, Patient.family_name == "Curie")
    ).scalar_one()
    assert f'href="/patients/{patient.id}"' in response.text
    assert db.execute(
        select(Condition.icd10_code).where(Condition.patient_id == patient.id)
    ).scalars().all() == ["G90.512"]
    again = _upload(admin, [("records.ndjson", GOOD_FILE)])
    assert "<strong>0</strong> accepted,\n    <strong>9</strong> unchanged" in again.text


def test_the_upload_needs_the_csrf_token(as_role, world, db) -> None:
    admin = as_role("admin")
    response = admin.client.post(
        PAGE, files=[("files", ("a.ndjson", ndjson(PATIENT), "application/x-ndjson"))]
    )
    assert response.status_code == 403
    assert db.execute(select(Patient).where(Patient.family_name == "Curie")).first() is None


def test_a_nurse_cannot_import(as_role, world, db) -> None:
    nurse = as_role("nurse")
    assert nurse.client.get(PAGE).status_code == 403
    nurse.refresh_csrf("/fhir-exchange")
    assert _upload(nurse, [("a.ndjson", ndjson(PATIENT))]).status_code == 403
    assert db.execute(select(Patient).where(Patient.family_name == "Curie")).first() is None


def test_another_clinics_admin_cannot_reach_this_clinics_patients(browser, world, db) -> None:
    outsider = world.users["outsider"]
    outsider.role = Role.clinic_admin.value
    db.commit()
    other = browser("outsider", world)
    other.refresh_csrf(PAGE)
    by_id = {**CONDITION, "id": "x1", "subject": {"reference": f"Patient/{world.patient_a.id}"}}
    # patient_a's record number, as a record number of the outsider's own clinic (its system).
    number = {"system": record_number_system("other"), "value": world.patient_a.record_number}
    by_number = {**CONDITION, "id": "x2", "subject": {"identifier": number}}
    response = _upload(other, [("reach.ndjson", ndjson(by_id, by_number))])
    assert response.status_code == 200
    assert "<strong>2</strong> rejected" in response.text
    assert f"Patient/{world.patient_a.id} is not a patient imported into this clinic" in response.text
    assert (
        f"{world.patient_a.record_number!r} is not a record number of this clinic".replace("'", "&#39;")
        in response.text
    )
    assert db.execute(select(Condition).where(Condition.patient_id == world.patient_a.id)).first() is None
    # What the outsider imports lands in their own clinic.
    _upload(other, [("own.ndjson", ndjson(PATIENT))])
    copy = db.execute(select(Patient).where(Patient.family_name == "Curie")).scalar_one()
    assert copy.clinic_id == world.other_clinic.id


def test_the_upload_needs_a_source_system_and_names_the_files_to_choose_again(as_role, world, db) -> None:
    admin = as_role("admin")
    page = admin.client.get(PAGE)
    assert 'name="source" maxlength="100" required' in page.text
    admin.refresh_csrf(PAGE)
    files = [("records.ndjson", GOOD_FILE), ("more.ndjson", ndjson({**PATIENT, "id": "src-2"}))]
    for source in ("", "   ", "old\tehr"):
        response = _upload(admin, files, source=source)
        assert response.status_code == 422, (source, response.status_code)
        assert "Source system:" in response.text and "Nothing was imported" in response.text
        assert "choose records.ndjson, more.ndjson again" in response.text
    blank = _upload(admin, files, source="")
    assert "Name the system the records come from" in blank.text
    assert db.execute(select(Patient).where(Patient.family_name == "Curie")).first() is None


def test_an_upload_with_a_date_out_of_range_reports_the_line(as_role, world, db) -> None:
    admin = as_role("admin")
    admin.refresh_csrf(PAGE)
    year_one = observation(
        "hr-y1", "8867-4", effectiveDateTime="0001-01-01T00:30:00+01:00", valueQuantity=quantity(64, "/min")
    )
    response = _upload(admin, [("y1.ndjson", ndjson(PATIENT, year_one))])
    assert response.status_code == 200, response.status_code
    assert "<strong>1</strong> accepted" in response.text and "<strong>1</strong> rejected" in response.text
    assert "is not an instant KetaCare can keep" in response.text
    assert (
        db.execute(select(Patient).where(Patient.family_name == "Curie")).scalar_one().clinic_id
        == world.clinic.id
    )
