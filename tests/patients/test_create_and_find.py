"""A prescriber adds a patient and finds them again by name, date of birth or record number."""

from __future__ import annotations

from ketacare.patients.models import Patient
from tests.helpers import audit_entries, count

NEW = {"given_name": "Rosa", "family_name": "Parkes", "date_of_birth": "1961-02-04", "sex": "female"}


def test_prescriber_adds_and_finds_patient(as_role, world, db) -> None:
    prescriber = as_role("prescriber")
    created = prescriber.post("/patients", NEW, follow_redirects=False)
    assert created.status_code == 303
    page = prescriber.get(created.headers["location"])
    assert "Parkes, Rosa" in page.text and "TST-000001" in page.text
    for query in ("parkes", "Ros Par", "1961-02-04", "02/04/1961", "TST-000001", "tst-000001"):
        found = prescriber.get("/patients", params={"q": query})
        assert "Parkes, Rosa" in found.text, query
    patient_id = int(created.headers["location"].split("/")[2].split("?")[0])
    assert audit_entries(db, "patient.create", patient_id=patient_id)
    assert audit_entries(db, "patient.list", patient_id=patient_id)


def test_record_numbers_are_sequential_and_stable(as_role, db) -> None:
    nurse = as_role("nurse")
    first = nurse.api("POST", "/api/v1/patients", json=NEW).json()
    second = nurse.api("POST", "/api/v1/patients", json={**NEW, "given_name": "Ruth"}).json()
    assert (first["record_number"], second["record_number"]) == ("TST-000001", "TST-000002")
    nurse.api("PATCH", f"/api/v1/patients/{first['id']}", json={"family_name": "Parks"})
    assert nurse.api("GET", f"/api/v1/patients/{first['id']}").json()["record_number"] == "TST-000001"


def test_duplicate_record_number_is_refused(as_role, world, db) -> None:
    nurse = as_role("nurse")
    before = count(db, Patient)
    response = nurse.post("/patients", {**NEW, "record_number": world.patient_a.record_number})
    assert response.status_code == 422
    assert "belongs to another patient" in response.text
    assert 'value="Parkes"' in response.text
    assert count(db, Patient) == before
    api = nurse.api("POST", "/api/v1/patients", json={**NEW, "record_number": world.patient_a.record_number})
    assert api.status_code == 422 and api.json()["errors"][0]["field"] == "record_number"


def test_same_record_number_allowed_in_another_clinic(as_role, world) -> None:
    outsider = as_role("outsider_nurse")
    response = outsider.api("POST", "/api/v1/patients", json={**NEW, "record_number": "TST-900001"})
    assert response.status_code == 201


def test_pagination(as_role, db) -> None:
    nurse = as_role("nurse")
    for i in range(30):
        nurse.api("POST", "/api/v1/patients", json={**NEW, "given_name": f"Page{i:02d}"})
    first = nurse.api("GET", "/api/v1/patients", params={"q": "parkes", "per_page": 25}).json()
    second = nurse.api("GET", "/api/v1/patients", params={"q": "parkes", "page": 2, "per_page": 25}).json()
    assert first["total"] == 30 and len(first["items"]) == 25 and len(second["items"]) == 5
    assert not {p["id"] for p in first["items"]} & {p["id"] for p in second["items"]}
    html = nurse.get("/patients", params={"q": "parkes", "page": 2})
    assert "Page 2 of 2" in html.text


def test_htmx_search_returns_only_the_rows(as_role, world) -> None:
    nurse = as_role("nurse")
    fragment = nurse.get("/patients", params={"q": "lovelace"}, headers={"HX-Request": "true"})
    assert "Lovelace, Ada" in fragment.text and "<html" not in fragment.text


def test_search_input_with_sql_wildcards_is_literal(as_role, world) -> None:
    nurse = as_role("nurse")
    assert nurse.api("GET", "/api/v1/patients", params={"q": "%"}).json()["total"] == 0
    assert nurse.api("GET", "/api/v1/patients", params={"q": "_"}).json()["total"] == 0
