"""MedicationStatement: the patient's own medications, field for field as the import reads them."""

from __future__ import annotations

import datetime as dt

from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.interop.fhir.resources.medication_statement import DRUG_CLASS_SYSTEM, frequency
from ketacare.patients import service as patients
from ketacare.patients.schemas import MedicationCreate
from tests.interop_fhir.conftest import validate
from tests.interop_fhir.test_map_medication_request import (
    BASE,
    assert_round_trips,
    by_id,
    other_clinic_id,
    read_all,
    rows,
    status_of,
)


def _medications(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    patients_ = {p.id for p in rows(demo_fhir, "patients", lambda t: [t.c.clinic_id == clinic_id])}
    return [m for m in rows(demo_fhir, "patient_medications") if m.patient_id in patients_]


def test_every_statement_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "MedicationStatement")
    assert_round_trips(resources)
    assert {r["id"] for r in resources} == {str(m.id) for m in _medications(demo_fhir, demo_fhir.clinic_id)}


def test_statements_equal_the_medication_list(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "MedicationStatement"))
    for row in _medications(demo_fhir, demo_fhir.clinic_id):
        ms = found[str(row.id)]
        assert ms["status"] == "active"
        assert ms["subject"] == {"reference": f"Patient/{row.patient_id}"}
        assert ms["medicationCodeableConcept"]["text"] == row.name
        assert ms["medicationCodeableConcept"]["coding"][0]["system"] == DRUG_CLASS_SYSTEM
        assert ms["medicationCodeableConcept"]["coding"][0]["code"] == row.drug_class
        dosage = ms["dosage"][0]
        assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == row.dose_amount
        assert dosage["doseAndRate"][0]["doseQuantity"]["unit"] == row.dose_unit
        repeat = dosage["timing"]["repeat"]
        assert repeat["frequency"] / repeat["period"] == row.doses_per_day and repeat["periodUnit"] == "d"
        assert dosage["route"]["text"] == row.route


def test_search_by_drug_class(demo_fhir) -> None:
    opioids = read_all(demo_fhir, "MedicationStatement", code=f"{DRUG_CLASS_SYSTEM}|opioid")
    expected = {str(m.id) for m in _medications(demo_fhir, demo_fhir.clinic_id) if m.drug_class == "opioid"}
    assert {r["id"] for r in opioids} == expected and expected


def test_another_clinics_medications_are_not_found(demo_fhir) -> None:
    theirs = _medications(demo_fhir, other_clinic_id(demo_fhir))
    assert theirs
    assert status_of(demo_fhir, f"{BASE}/MedicationStatement/{theirs[0].id}") == 404


def test_start_date_and_fractional_frequency(browser, world, token_for, db) -> None:
    nurse = world.users["nurse"]
    actor = Principal(nurse.id, nurse.username, Role.nurse, world.clinic.id)
    row = patients.add_medication(
        db,
        actor,
        world.patient_a.id,
        MedicationCreate(
            name="Fentanyl patch",
            drug_class="opioid",
            dose_amount=25,
            dose_unit="mcg/h",
            doses_per_day=1.5,
            route="transdermal",
            started_on=dt.date(2025, 3, 1),
        ),
    )
    db.commit()
    headers = token_for("system/MedicationStatement.read")
    response = browser().client.get(f"{BASE}/MedicationStatement/{row.id}", headers=headers)
    assert response.status_code == 200, response.text
    ms = response.json()
    validate(ms)
    assert ms["effectivePeriod"] == {"start": "2025-03-01"}
    dosage = ms["dosage"][0]
    assert dosage["timing"]["repeat"] == {"frequency": 3, "period": 2, "periodUnit": "d"}
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 25.0,
        "unit": "mcg/h",
        "system": "http://unitsofmeasure.org",
        "code": "ug/h",
    }
    assert dosage["text"] == "25 mcg/h transdermal, 1.5 times a day"
    assert frequency(1.0) == (1, 1) and frequency(0.5) == (1, 2)


def test_a_medication_with_no_dose_route_or_frequency_is_still_valid() -> None:
    from types import SimpleNamespace

    from ketacare.interop.fhir.resources.medication_statement import to_fhir

    row = SimpleNamespace(
        id=1,
        patient_id=2,
        name="Sertraline",
        drug_class="antidepressant",
        dose_amount=None,
        dose_unit=None,
        doses_per_day=None,
        route=None,
        started_on=None,
        recorded_at=None,
    )
    resource = to_fhir(row)
    validate(resource)
    assert "dosage" not in resource and resource["medicationCodeableConcept"]["text"] == "Sertraline"
