"""The FHIR REST core: CapabilityStatement, read, search with paging, OperationOutcome for every
error, SMART-style token scopes, clinic isolation and the audit entry per patient."""

from __future__ import annotations

import pytest

from ketacare.errors import InvalidInput
from ketacare.interop.fhir.resources import mappers
from tests.helpers import audit_entries
from tests.interop_fhir.conftest import FHIR_JSON, validate, validate_bundle

BASE = "/fhir/R4"


def _outcome(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = response.json()
    validate(body)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
    return body


def test_capability_statement_is_public_and_lists_every_type(browser) -> None:
    response = browser().client.get(f"{BASE}/metadata")
    assert response.status_code == 200
    body = response.json()
    validate(body)
    listed = {r["type"] for r in body["rest"][0]["resource"]}
    assert listed == set(mappers()) and "Patient" in listed
    assert body["fhirVersion"] == "4.0.1"


def test_read_patient_validates_as_us_core_and_is_audited(browser, world, token_for, db) -> None:
    headers = token_for("system/*.read")
    response = browser().client.get(f"{BASE}/Patient/{world.patient_a.id}", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith(FHIR_JSON)
    patient = response.json()
    validate(patient)
    assert patient["identifier"][0]["value"] == "TST-900001"
    assert patient["name"][0]["family"] == "Lovelace" and patient["birthDate"] == "1980-05-17"
    assert patient["meta"]["profile"] == ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]
    assert audit_entries(db, "fhir.read", patient_id=world.patient_a.id)


def test_another_clinics_patient_is_not_found(browser, world, token_for) -> None:
    headers = token_for("system/*.read")
    _outcome(browser().client.get(f"{BASE}/Patient/{world.other_patient.id}", headers=headers), 404)


def test_search_by_name_and_birthdate_with_paging(browser, world, token_for, db) -> None:
    headers = token_for("system/*.read")
    client = browser().client
    bundle = client.get(
        f"{BASE}/Patient", params={"birthdate": "1980-05", "_count": "1"}, headers=headers
    ).json()
    first = validate_bundle(bundle)
    assert len(first) == 1 and bundle["type"] == "searchset"
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert "next" in links
    second = validate_bundle(client.get(links["next"], headers=headers).json())
    assert {first[0]["id"], second[0]["id"]} == {str(world.patient_a.id), str(world.patient_b.id)}
    by_name = validate_bundle(client.get(f"{BASE}/Patient?family=hop", headers=headers).json())
    assert [p["id"] for p in by_name] == [str(world.patient_b.id)]
    none = client.get(f"{BASE}/Patient?birthdate=lt1950-01-01", headers=headers).json()
    assert none.get("entry", []) == [] and none["total"] == 0
    identifier = client.get(f"{BASE}/Patient?identifier=TST-900002", headers=headers).json()
    assert [e["resource"]["id"] for e in identifier["entry"]] == [str(world.patient_b.id)]


def test_bad_search_parameters_are_operation_outcomes(browser, token_for) -> None:
    headers = token_for("system/*.read")
    client = browser().client
    _outcome(client.get(f"{BASE}/Patient?colour=blue", headers=headers), 422)
    _outcome(client.get(f"{BASE}/Patient?birthdate=yesterday", headers=headers), 422)
    _outcome(client.get(f"{BASE}/Patient?_count=100000", headers=headers), 422)
    _outcome(client.get(f"{BASE}/Unicorn", headers=headers), 404)
    _outcome(client.get(f"{BASE}/Patient/9999999", headers=headers), 404)
    _outcome(client.get(f"{BASE}/Patient/1/$everything?_since=never", headers=headers), 422)


def test_no_token_or_narrow_scope_is_refused(browser, world, token_for) -> None:
    client = browser().client
    _outcome(client.get(f"{BASE}/Patient/{world.patient_a.id}"), 401)
    observations_only = token_for("system/Observation.read")
    _outcome(client.get(f"{BASE}/Patient/{world.patient_a.id}", headers=observations_only), 403)
    device = token_for("device:vitals")
    _outcome(client.get(f"{BASE}/Patient/{world.patient_a.id}", headers=device), 403)


def test_staff_read_through_their_session_researchers_cannot(as_role, world) -> None:
    nurse = as_role("nurse")
    assert nurse.client.get(f"{BASE}/Patient/{world.patient_a.id}").status_code == 200
    assert nurse.client.get("/fhir-exchange").status_code == 200
    researcher = as_role("researcher")
    _outcome(researcher.client.get(f"{BASE}/Patient/{world.patient_a.id}"), 403)
    outsider = as_role("outsider")
    _outcome(outsider.client.get(f"{BASE}/Patient/{world.patient_a.id}"), 404)


def test_everything_holds_the_patient_and_their_organization(browser, world, token_for) -> None:
    headers = token_for("system/*.read")
    bundle = browser().client.get(f"{BASE}/Patient/{world.patient_a.id}/$everything", headers=headers).json()
    resources = validate_bundle(bundle)
    assert resources[0]["resourceType"] == "Patient" and resources[0]["id"] == str(world.patient_a.id)
    ids = {(r["resourceType"], r["id"]) for r in resources}
    assert ("Patient", str(world.patient_b.id)) not in ids


def test_demo_clinic_patients_all_validate(demo_fhir) -> None:
    bundle = demo_fhir.get(f"{BASE}/Patient", _count="100")
    patients = validate_bundle(bundle)
    assert len(patients) == 12
    assert all(
        p["managingOrganization"]["reference"] == f"Organization/{demo_fhir.clinic_id}" for p in patients
    )


def test_token_scope_types_are_the_served_types_but_the_audit_trail() -> None:
    from ketacare.auth.permissions import FHIR_RESOURCE_TYPES

    served = {name for name, m in mappers().items() if m.permission is None}
    assert set(FHIR_RESOURCE_TYPES) == served
    assert "AuditEvent" in mappers() and "AuditEvent" not in FHIR_RESOURCE_TYPES


def test_no_token_reads_the_audit_trail(browser, token_for) -> None:
    client = browser().client
    _outcome(client.get(f"{BASE}/AuditEvent", headers=token_for("system/*.read")), 403)
    with pytest.raises(InvalidInput):  # nor can the scope be granted
        token_for("system/AuditEvent.read")


def test_hostile_numbers_and_dates_are_422_or_404_never_500(browser, world, token_for) -> None:
    headers = token_for("system/*.read")
    client = browser().client
    for path in (
        f"{BASE}/Patient?_id=²",
        f"{BASE}/Patient?_count=²",
        f"{BASE}/Observation?patient=²",
        f"{BASE}/Observation?_id=vital-²-hr",
        f"{BASE}/Patient?_id=99999999999999999999999",
        f"{BASE}/Patient?birthdate=9999-12-31",
        f"{BASE}/Patient?birthdate=0001-01-01T00:00:00%2B01:00",
        f"{BASE}/Patient?_lastUpdated=ge9999-12-31",
        f"{BASE}/Patient?_offset=100001",
        f"{BASE}/Patient/{world.patient_a.id}/$everything?_since=9999-12-31",
    ):
        response = client.get(path, headers=headers)
        assert response.status_code in (200, 404, 422), (path, response.text)
        if response.status_code != 200:
            _outcome(response, response.status_code)
    for path in (f"{BASE}/Patient/99999999999999999999", f"{BASE}/Encounter/99999999999999999999"):
        _outcome(client.get(path, headers=headers), 404)
    # One resource, one id: a leading zero is not another name for it.
    _outcome(client.get(f"{BASE}/Patient/0{world.patient_a.id}", headers=headers), 404)


def test_count_zero_gives_the_total_and_no_next_link(browser, token_for) -> None:
    headers = token_for("system/*.read")
    bundle = browser().client.get(f"{BASE}/Patient?_count=0", headers=headers).json()
    validate(bundle)
    assert bundle["total"] == 2 and "entry" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self"]


def test_everything_marks_the_compartment_as_match_and_the_rest_as_include(demo_fhir) -> None:
    with demo_fhir.db() as db:
        from sqlalchemy import text

        patient = db.execute(
            text(
                "SELECT patient_id FROM treatment_sessions WHERE clinic_id = :c AND status = 'discharged' "
                "ORDER BY patient_id LIMIT 1"
            ),
            {"c": demo_fhir.clinic_id},
        ).scalar_one()
    bundle = demo_fhir.get(f"{BASE}/Patient/{patient}/$everything")
    validate_bundle(bundle)
    assert bundle["link"][0]["relation"] == "self" and bundle["link"][0]["url"].endswith("/$everything")
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert ("Patient", "match") in modes and ("Encounter", "match") in modes
    assert ("Organization", "include") in modes and ("Organization", "match") not in modes
    assert bundle["total"] == sum(1 for e in bundle["entry"] if e["search"]["mode"] == "match")
