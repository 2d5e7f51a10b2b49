"""Export a patient through the FHIR API, import those lines into the other clinic as its admin:
the imported record matches; imported observations come back out of the API with their codes."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.interop.fhir.resources.base import record_number_system
from ketacare.patients import service as patients
from ketacare.patients.models import Condition, Measurement, Medication, Patient, PatientObservation
from ketacare.patients.schemas import ConditionCreate, MeasurementCreate, MedicationCreate
from tests.interop_fhir.conftest import validate, validate_bundle
from tests.interop_fhir.test_import_good import GOOD_FILE, PATIENT, ndjson, post

BASE = "/fhir/R4"
TYPES = ("Patient", "Condition", "Observation", "MedicationStatement")


def _admin(world) -> Principal:  # type: ignore[no-untyped-def]
    admin = world.users["admin"]
    return Principal(admin.id, admin.username, Role.clinic_admin, world.clinic.id)


def test_export_then_import_into_the_other_clinic_matches(browser, world, token_for, db) -> None:
    client = browser().client
    here = token_for("system/*.write", "system/*.read")
    # The source record: entered in KetaCare, plus observations imported from a monitor system.
    actor = _admin(world)
    source_id = world.patient_a.id
    patients.add_condition(
        db, actor, source_id, ConditionCreate(icd10_code="M79.7", onset_date=dt.date(2020, 2, 3))
    )
    patients.add_measurement(
        db, actor, source_id, MeasurementCreate(weight_kg=61.5, measured_on=dt.date(2025, 1, 2))
    )
    patients.add_medication(
        db,
        actor,
        source_id,
        MedicationCreate(
            name="Tramadol 50 mg", drug_class="opioid", dose_amount=50, dose_unit="mg", doses_per_day=2
        ),
    )
    patients.add_medication(
        db,
        actor,
        source_id,
        MedicationCreate(
            name="Sertraline", drug_class="antidepressant", dose_amount=50, dose_unit="mg", doses_per_day=1
        ),
    )
    db.commit()
    monitor = [
        json.loads(line)
        for line in GOOD_FILE.decode().splitlines()
        if json.loads(line)["resourceType"] == "Observation"
        and json.loads(line)["id"] in ("hr-1", "bp-1", "nrs-1")
    ]
    for obs in monitor:
        obs["subject"] = {
            "identifier": {"system": record_number_system("test"), "value": world.patient_a.record_number}
        }
    assert (
        post(client, here, ndjson(*monitor), source="monitor", _report="json").json()["totals"]["accepted"]
        == 3
    )

    bundle = client.get(f"{BASE}/Patient/{source_id}/$everything", headers=here).json()
    exported = [r for r in validate_bundle(bundle) if r["resourceType"] in TYPES]
    imported_ids = {r["id"] for r in exported if r["id"].startswith("imported-")}
    assert len(imported_ids) == 3  # the monitor's observations come back out
    by_code = {r["code"]["coding"][0]["code"]: r for r in exported if r["resourceType"] == "Observation"}
    assert by_code["8867-4"]["valueQuantity"] == {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert [c["valueQuantity"]["value"] for c in by_code["85354-9"]["component"]] == [128, 82]

    # Into the other clinic, as its admin.
    outsider = world.users["outsider"]
    there = token_for(
        "system/*.write",
        "system/*.read",
        clinic_actor=Principal(outsider.id, outsider.username, Role.clinic_admin, world.other_clinic.id),
    )
    report = post(client, there, ndjson(*exported), source="test-clinic", _report="json").json()
    outcomes = {(line["resource_type"], line["source_id"]): line for line in report["lines"]}
    rejected = {k: v["reason"] for k, v in outcomes.items() if v["outcome"] == "rejected"}
    assert rejected == {}, rejected
    assert report["totals"]["accepted"] == len(exported)

    copy = db.execute(
        select(Patient).where(Patient.clinic_id == world.other_clinic.id, Patient.family_name == "Lovelace")
    ).scalar_one()
    assert (copy.given_name, copy.date_of_birth, copy.sex) == ("Ada", dt.date(1980, 5, 17), "female")
    assert copy.record_number.startswith("OTH")
    conditions = db.execute(select(Condition).where(Condition.patient_id == copy.id)).scalars().all()
    assert [(c.icd10_code, c.onset_date) for c in conditions] == [("M79.7", dt.date(2020, 2, 3))]
    weights = db.execute(
        select(Measurement.weight_kg, Measurement.measured_on).where(Measurement.patient_id == copy.id)
    ).all()
    assert [tuple(w) for w in weights] == [(61.5, dt.date(2025, 1, 2))]
    medications = {
        m.name: m for m in db.execute(select(Medication).where(Medication.patient_id == copy.id)).scalars()
    }
    assert set(medications) == {"Tramadol 50 mg", "Sertraline"}
    tramadol = medications["Tramadol 50 mg"]
    assert (tramadol.drug_class, tramadol.dose_amount, tramadol.dose_unit, tramadol.doses_per_day) == (
        "opioid",
        50.0,
        "mg",
        2.0,
    )
    assert medications["Sertraline"].drug_class == "antidepressant"
    observations = {
        o.code: o
        for o in db.execute(
            select(PatientObservation).where(PatientObservation.patient_id == copy.id)
        ).scalars()
    }
    assert (observations["8867-4"].value, observations["8867-4"].unit) == (72.0, "/min")
    assert observations["72514-3"].value == 7.0
    assert [c["value"] for c in observations["85354-9"].components or []] == [128.0, 82.0]

    # The copy's observations read back through the other clinic's API, never through this one's.
    mine = client.get(f"{BASE}/Observation", params={"patient": f"Patient/{copy.id}"}, headers=here).json()
    assert mine.get("entry", []) == []
    theirs = validate_bundle(
        client.get(f"{BASE}/Observation", params={"patient": f"Patient/{copy.id}"}, headers=there).json()
    )
    assert {r["code"]["coding"][0]["code"] for r in theirs} >= {"8867-4", "85354-9", "72514-3", "29463-7"}


def test_an_imported_observation_reads_by_its_id(browser, world, token_for, db) -> None:
    client = browser().client
    headers = token_for("system/*.write", "system/*.read")
    assert post(client, headers, GOOD_FILE).status_code == 200
    row = db.execute(select(PatientObservation).where(PatientObservation.code == "8310-5")).scalar_one()
    resource = client.get(f"{BASE}/Observation/imported-{row.id}", headers=headers).json()
    validate(resource)
    assert resource["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "8310-5",
        "display": "Body temperature",
    }
    assert (
        resource["valueQuantity"]["code"] == "Cel" and abs(resource["valueQuantity"]["value"] - 37.0) < 0.01
    )
    assert resource["effectiveDateTime"] == "2025-03-04T15:15:00+00:00"
    assert resource["subject"]["reference"].startswith("Patient/")
    # A patient imported twice from the same file is still one patient.
    assert post(client, headers, ndjson(PATIENT), _report="json").json()["lines"][0]["outcome"] == "unchanged"


NRS_DISPLAY = "Pain severity - 0-10 verbal numeric rating [Score] - Reported"  # fhir_observation_codes.toml
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"


def test_imported_observations_go_out_as_keta_cares_own(browser, world, token_for, db) -> None:
    """Pain NRS goes out in one shape whatever its source (valueInteger, the knowledge data's
    display, as a session NRS); imported vital signs claim the US Core profile of their code."""
    from ketacare.interop.fhir.resources import observation as mapping
    from ketacare.knowledge.fhir_observation_codes import observation_kinds

    client = browser().client
    headers = token_for("system/*.write", "system/*.read")
    as_quantity = {
        **json.loads(GOOD_FILE.decode().splitlines()[-1]),
        "id": "nrs-q",
        "valueInteger": None,
        "valueQuantity": {
            "value": 4,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
    }
    del as_quantity["valueInteger"]
    body = GOOD_FILE + ndjson(as_quantity)
    assert post(client, headers, body, _report="json").json()["totals"]["accepted"] == 10
    rows = {
        (o.code, o.value): o.id
        for o in db.execute(
            select(PatientObservation).where(PatientObservation.source.like("%old-ehr%"))
        ).scalars()
    }

    def read(code: str, value: float | None) -> dict:  # type: ignore[type-arg]
        resource = client.get(f"{BASE}/Observation/imported-{rows[(code, value)]}", headers=headers).json()
        validate(resource)
        return resource

    session_nrs = mapping.observation(
        "score-1",
        observation_kinds()["scale"]["nrs"],
        patient_id=1,
        effective=None,
        recorded=None,
        value=mapping.value_of(observation_kinds()["scale"]["nrs"], 7),
    )
    for value in (7.0, 4.0):
        nrs = read("72514-3", value)
        assert nrs["valueInteger"] == int(value) and "valueQuantity" not in nrs
        assert (
            nrs["code"]
            == session_nrs["code"]
            == {
                "coding": [{"system": "http://loinc.org", "code": "72514-3", "display": NRS_DISPLAY}],
                "text": "Pain severity 0-10 numeric rating",
            }
        )
        assert nrs["category"] == session_nrs["category"]
        assert "profile" not in nrs["meta"] and "profile" not in session_nrs.get("meta", {})
    assert {
        o.display
        for o in db.execute(select(PatientObservation).where(PatientObservation.code == "72514-3")).scalars()
    } == {NRS_DISPLAY}

    heart = read("8867-4", 72.0)
    assert heart["meta"]["profile"] == [US_CORE + "us-core-heart-rate"]
    assert heart["valueQuantity"] == {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    temperature = read("8310-5", 37.0)
    assert temperature["meta"]["profile"] == [US_CORE + "us-core-body-temperature"]
    panel = read("85354-9", None)
    assert panel["meta"]["profile"] == [US_CORE + "us-core-blood-pressure"]
    assert panel["code"]["coding"][0]["display"] == "Blood pressure panel with all children optional"
    assert [
        (c["code"]["coding"][0]["code"], c["code"]["coding"][0]["display"], c["valueQuantity"]["value"])
        for c in panel["component"]
    ] == [
        ("8480-6", "Systolic blood pressure", 128),
        ("8462-4", "Diastolic blood pressure", 82),
    ]
