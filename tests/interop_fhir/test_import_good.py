"""FHIR NDJSON import, the good path: every supported line accepted into the right rows with
units converted; a second import is all "unchanged" and writes nothing; a changed Patient
updates demographics; the OperationOutcome and the JSON report."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from ketacare.interop.fhir.models import FhirImportLink
from ketacare.patients.models import Condition, Measurement, Medication, Patient, PatientObservation
from tests.helpers import audit_entries, count
from tests.interop_fhir.conftest import FHIR_JSON, validate

BASE = "/fhir/R4"
NDJSON = "application/fhir+ndjson"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def ndjson(*resources: dict[str, Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in resources).encode()


def quantity(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def observation(oid: str, code: str, patient: str = "Patient/src-1", **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": patient},
        "effectiveDateTime": "2025-03-04T10:15:00-05:00",
        **value,
    }


PATIENT = {
    "resourceType": "Patient",
    "id": "src-1",
    "name": [{"use": "official", "family": "Curie", "given": ["Marie", "Salomea"]}],
    "gender": "female",
    "birthDate": "1967-11-07",
    "telecom": [{"system": "phone", "value": "555-0100"}, {"system": "email", "value": "marie@example.org"}],
    "address": [{"line": ["1 Radium Way"], "city": "Boston", "state": "MA", "postalCode": "02115"}],
}
CONDITION = {
    "resourceType": "Condition",
    "id": "cond-1",
    "clinicalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
    },
    "code": {
        "coding": [
            {"system": ICD, "code": "G90.512", "display": "CRPS I of left upper limb"},
            {"system": "http://snomed.info/sct", "code": "734947007"},
        ]
    },
    "subject": {"reference": "Patient/src-1"},
    "onsetDateTime": "2023-06-01",
}
MEDICATION = {
    "resourceType": "MedicationStatement",
    "id": "med-1",
    "status": "active",
    "medicationCodeableConcept": {"text": "Oxycodone 10 mg tablet"},
    "subject": {"reference": "Patient/src-1"},
    "effectiveDateTime": "2024-01-15",
    "dosage": [
        {
            "text": "10 mg every 8 hours",
            "route": {"text": "oral"},
            "timing": {"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}},
            "doseAndRate": [{"doseQuantity": quantity(10, "mg")}],
        }
    ],
}
OBSERVATIONS = [
    observation("wt-1", "29463-7", valueQuantity=quantity(154, "[lb_av]")),
    observation("ht-1", "8302-2", valueQuantity=quantity(65, "[in_i]")),
    observation("hr-1", "8867-4", valueQuantity=quantity(72, "/min")),
    observation("temp-1", "8310-5", valueQuantity=quantity(98.6, "[degF]")),
    observation(
        "bp-1",
        "85354-9",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": quantity(128, "mm[Hg]"),
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": quantity(82, "mm[Hg]"),
            },
        ],
    ),
    observation("nrs-1", "72514-3", valueInteger=7),
]
# The Condition comes before its Patient: Patients are imported first.
GOOD_FILE = ndjson(CONDITION, PATIENT, MEDICATION, *OBSERVATIONS)


def post(client, headers, body: bytes, **params: str | None):  # type: ignore[no-untyped-def]
    """POST to $import; ``source`` (required) is "old-ehr" unless given (``None``: left out)."""
    params.setdefault("source", "old-ehr")
    params = {k: v for k, v in params.items() if v is not None}
    return client.post(
        f"{BASE}/$import", content=body, params=params, headers={**headers, "Content-Type": NDJSON}
    )


@pytest.fixture
def writer(token_for):  # type: ignore[no-untyped-def]
    return token_for("system/*.write", "system/*.read")


def _imported_patient(db, world) -> Patient:  # type: ignore[no-untyped-def]
    return db.execute(
        select(Patient).where(Patient.clinic_id == world.clinic.id, Patient.family_name == "Curie")
    ).scalar_one()


def test_a_good_file_is_accepted_into_the_right_rows(browser, world, writer, db) -> None:
    response = post(browser().client, writer, GOOD_FILE, _report="json")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["totals"] == {"lines": 9, "accepted": 9, "unchanged": 0, "rejected": 0}, report
    assert [line["line"] for line in report["lines"]] == list(range(1, 10))

    patient = _imported_patient(db, world)
    assert (patient.given_name, patient.date_of_birth.isoformat(), patient.sex) == (
        "Marie Salomea",
        "1967-11-07",
        "female",
    )
    assert (patient.phone, patient.email, patient.city, patient.state, patient.postal_code) == (
        "555-0100",
        "marie@example.org",
        "Boston",
        "MA",
        "02115",
    )
    assert patient.record_number.startswith("TST")  # the clinic's own number
    assert report["lines"][1]["local"] == f"patients/{patient.id}"

    condition = db.execute(select(Condition).where(Condition.patient_id == patient.id)).scalar_one()
    assert (condition.icd10_code, condition.onset_date.isoformat()) == ("G90.512", "2023-06-01")

    medication = db.execute(select(Medication).where(Medication.patient_id == patient.id)).scalar_one()
    assert (medication.drug_class, medication.dose_amount, medication.dose_unit) == ("opioid", 10.0, "mg")
    assert (medication.doses_per_day, medication.route, medication.started_on.isoformat()) == (
        3.0,
        "oral",
        "2024-01-15",
    )

    measurements = db.execute(select(Measurement).where(Measurement.patient_id == patient.id)).scalars().all()
    weights = [m.weight_kg for m in measurements if m.weight_kg is not None]
    heights = [m.height_cm for m in measurements if m.height_cm is not None]
    assert weights == [pytest.approx(69.85, abs=0.01)]  # 154 lb
    assert heights == [pytest.approx(165.1, abs=0.05)]  # 65 in
    assert {m.measured_on.isoformat() for m in measurements} == {"2025-03-04"}

    kept = {
        o.code: o
        for o in db.execute(
            select(PatientObservation).where(PatientObservation.patient_id == patient.id)
        ).scalars()
    }
    assert set(kept) == {"8867-4", "8310-5", "85354-9", "72514-3"}
    assert (kept["8867-4"].value, kept["8867-4"].unit) == (72.0, "/min")
    assert kept["8310-5"].unit == "Cel" and kept["8310-5"].value == pytest.approx(37.0)
    assert kept["85354-9"].value is None
    assert [(c["code"], c["value"], c["unit"]) for c in kept["85354-9"].components or []] == [
        ("8480-6", 128.0, "mm[Hg]"),
        ("8462-4", 82.0, "mm[Hg]"),
    ]
    assert (kept["72514-3"].value, kept["72514-3"].category) == (7.0, "survey")
    assert kept["8867-4"].effective_at.isoformat() == "2025-03-04T15:15:00+00:00"  # stored in UTC

    assert len(audit_entries(db, "patient.create", patient_id=patient.id)) == 1
    assert len(audit_entries(db, "patient.observation.add", patient_id=patient.id)) == 4
    assert audit_entries(db, "fhir.import")


def test_reimporting_the_same_file_changes_nothing(browser, world, writer, db) -> None:
    client = browser().client
    assert post(client, writer, GOOD_FILE).status_code == 200
    before = {
        model.__name__: count(db, model)
        for model in (Patient, Condition, Measurement, Medication, PatientObservation, FhirImportLink)
    }
    again = post(client, writer, GOOD_FILE, _report="json").json()
    assert again["totals"] == {"lines": 9, "accepted": 0, "unchanged": 9, "rejected": 0}
    after = {
        model.__name__: count(db, model)
        for model in (Patient, Condition, Measurement, Medication, PatientObservation, FhirImportLink)
    }
    assert after == before
    # A re-export with a new meta.lastUpdated is the same resource.
    restamped = ndjson({**PATIENT, "meta": {"lastUpdated": "2026-01-01T00:00:00Z"}})
    assert post(client, writer, restamped, _report="json").json()["lines"][0]["outcome"] == "unchanged"


def test_a_changed_patient_updates_demographics_other_changes_are_refused(browser, world, writer, db) -> None:
    client = browser().client
    assert post(client, writer, GOOD_FILE).status_code == 200
    moved = {**PATIENT, "name": [{"use": "official", "family": "Sklodowska-Curie", "given": ["Marie"]}]}
    changed_condition = {**CONDITION, "onsetDateTime": "2023-07-01"}
    report = post(client, writer, ndjson(moved, changed_condition), _report="json").json()
    by_type = {line["resource_type"]: line for line in report["lines"]}
    assert by_type["Patient"]["outcome"] == "accepted"
    assert "name.family" in by_type["Patient"]["reason"] and "name.given" in by_type["Patient"]["reason"]
    assert by_type["Condition"]["outcome"] == "rejected"
    assert "changed since it was imported" in by_type["Condition"]["reason"]
    db.expire_all()
    patient = db.execute(
        select(Patient).where(Patient.clinic_id == world.clinic.id, Patient.family_name == "Sklodowska-Curie")
    ).scalar_one()
    assert patient.given_name == "Marie"
    assert audit_entries(db, "patient.update", patient_id=patient.id)
    condition = db.execute(select(Condition).where(Condition.patient_id == patient.id)).scalar_one()
    assert condition.onset_date.isoformat() == "2023-06-01"  # untouched


def test_the_answer_is_an_operation_outcome_with_one_issue_per_rejected_line(browser, world, writer) -> None:
    body = (
        ndjson(PATIENT)
        + b"not json\n"
        + ndjson({**CONDITION, "id": "c2", "subject": {"reference": "Patient/nobody"}})
    )
    response = post(browser().client, writer, body)
    assert response.status_code == 200 and response.headers["content-type"].startswith(FHIR_JSON)
    outcome = response.json()
    validate(outcome)
    first, *errors = outcome["issue"]
    assert first["severity"] == "information" and "1 accepted" in first["diagnostics"]
    assert "2 rejected" in first["diagnostics"]
    assert [(e["severity"], e["code"], e["expression"]) for e in errors] == [
        ("error", "invalid", ["line 2"]),
        ("error", "not-found", ["line 3"]),
    ]
    assert "not JSON" in errors[0]["diagnostics"] and "Patient/nobody" in errors[1]["diagnostics"]


def test_the_same_ids_from_another_source_system_are_other_resources(browser, world, writer, db) -> None:
    client = browser().client
    assert (
        post(client, writer, ndjson(PATIENT), source="old-ehr")
        .json()["issue"][0]["diagnostics"]
        .startswith("Import: 1 lines: 1 accepted")
    )
    other = post(client, writer, ndjson(PATIENT), source="lab-system", _report="json").json()
    assert other["totals"]["accepted"] == 1 and other["source"] == "lab-system"
    assert count(db, Patient, Patient.clinic_id == world.clinic.id, Patient.family_name == "Curie") == 2


def test_import_needs_the_write_scope_and_ndjson(browser, token_for) -> None:
    client = browser().client
    reader = token_for("system/*.read")
    refused = post(client, reader, ndjson(PATIENT))
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    writer = token_for("system/*.write")
    wrong_type = client.post(
        f"{BASE}/$import", content=ndjson(PATIENT), headers={**writer, "Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415 and wrong_type.json()["issue"][0]["code"] == "not-supported"


def test_imported_observations_show_on_the_patient_record(browser, world, writer, db, as_role) -> None:
    assert post(browser().client, writer, GOOD_FILE).status_code == 200
    patient = _imported_patient(db, world)
    page = as_role("nurse").client.get(f"/patients/{patient.id}")
    assert page.status_code == 200
    assert "Observations from other systems" in page.text
    assert "Heart rate" in page.text and "72 /min" in page.text and "128 mm[Hg]" in page.text


@pytest.mark.parametrize("source", [None, "", "   "])
def test_the_source_system_is_required(browser, world, writer, db, source) -> None:
    """Links are kept per source system: without one, hospital B's Patient/1 would update
    hospital A's. A missing or blank ``source`` is a 422 OperationOutcome and imports nothing."""
    patients_before = count(db, Patient)
    response = post(browser().client, writer, ndjson(PATIENT), source=source)
    assert response.status_code == 422 and response.headers["content-type"].startswith(FHIR_JSON)
    outcome = response.json()
    validate(outcome)
    issue = outcome["issue"][0]
    assert (issue["severity"], issue["code"]) == ("error", "required")
    assert issue["diagnostics"].startswith("source: Name the system the records come from")
    assert "Nothing was imported" in issue["diagnostics"]
    assert count(db, Patient) == patients_before and count(db, FhirImportLink) == 0


def test_a_source_system_with_a_control_character_is_refused(browser, world, writer, db) -> None:
    response = post(browser().client, writer, ndjson(PATIENT), source="old\tehr")
    assert response.status_code == 422 and response.json()["issue"][0]["code"] == "value"
    assert count(db, Patient, Patient.family_name == "Curie") == 0


def test_a_patient_update_naming_another_person_is_a_conflict(browser, world, writer, db) -> None:
    """Same source and id, but another family name AND another birth date: another person, not
    a correction. The line is refused and the stored patient keeps its demographics; a change of
    one of the two (a married name, a mistyped birth date) is still an update."""
    client = browser().client
    assert post(client, writer, ndjson(PATIENT)).status_code == 200
    stranger = {
        **PATIENT,
        "name": [{"use": "official", "family": "Zed", "given": ["Bob"]}],
        "gender": "male",
        "birthDate": "1950-01-01",
    }
    report = post(client, writer, ndjson(stranger), _report="json").json()
    line = report["lines"][0]
    assert (line["outcome"], line["issue_code"]) == ("rejected", "conflict"), line
    assert line["reason"].startswith("conflict: Patient/src-1 from old-ehr was imported as patients/")
    assert "another person, not a correction" in line["reason"]
    db.expire_all()
    patient = _imported_patient(db, world)
    assert (patient.given_name, patient.sex, patient.date_of_birth.isoformat()) == (
        "Marie Salomea",
        "female",
        "1967-11-07",
    )
    assert count(db, Patient, Patient.family_name == "Zed") == 0
    # The OperationOutcome carries it as a conflict issue.
    outcome = post(client, writer, ndjson(stranger)).json()
    assert outcome["issue"][1]["code"] == "conflict"
    # A corrected birth date with the same family name (any case) is an update.
    corrected = {
        **PATIENT,
        "name": [{"use": "official", "family": "CURIE", "given": ["Marie"]}],
        "birthDate": "1967-11-08",
    }
    fixed = post(client, writer, ndjson(corrected), _report="json").json()["lines"][0]
    assert fixed["outcome"] == "accepted" and "birthDate" in fixed["reason"]
    db.expire_all()
    assert _imported_patient_by_name(db, world, "CURIE").date_of_birth.isoformat() == "1967-11-08"


def _imported_patient_by_name(db, world, family: str) -> Patient:  # type: ignore[no-untyped-def]
    return db.execute(
        select(Patient).where(Patient.clinic_id == world.clinic.id, Patient.family_name == family)
    ).scalar_one()


def test_observation_building_blocks_live_in_one_place() -> None:
    """``_number`` and ``CATEGORY_DISPLAY`` once, in observation_parts, used by both the session
    Observations and the imported ones."""
    from pathlib import Path

    from ketacare.interop.fhir.resources import imported_observations, observation, observation_parts

    for module in (observation, imported_observations):
        text = Path(str(module.__file__)).read_text()
        assert "def _number(" not in text and "CATEGORY_DISPLAY = " not in text, module.__name__
        assert "observation_parts import" in text, module.__name__
    assert observation_parts.number(7.0) == 7 and observation_parts.CATEGORY_DISPLAY["survey"] == "Survey"
